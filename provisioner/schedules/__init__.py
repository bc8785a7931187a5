"""Scheduled actions: expiry warnings and destroys, expiry of unapproved operations, drift
checks and their remediation."""
