"""Pieces the handlers share: status model and store, market-data parsing, S3 streaming."""
