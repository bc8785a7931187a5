"""The operations domain."""
