"""The fleet: counts of every environment by state, template, code version, drift and health,
and samples of them over time (docs/architecture.md §7–§8)."""
