"""Fleet rollouts in waves (docs/architecture.md §7)."""
