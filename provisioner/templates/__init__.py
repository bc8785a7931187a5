"""Templates: named, immutable, numbered versions of pipeline config (docs/architecture.md §7)."""
