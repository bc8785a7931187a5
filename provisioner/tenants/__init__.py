"""Tenants: per-tenant quotas and their usage (docs/architecture.md §8)."""
