"""The environments domain."""
