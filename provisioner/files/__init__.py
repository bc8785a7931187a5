"""The files domain."""
