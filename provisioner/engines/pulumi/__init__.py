"""The pulumi engine."""
