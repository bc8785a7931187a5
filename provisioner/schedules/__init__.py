"""Scheduled actions: expiry warnings and destroys, expiry of unapproved operations."""
