"""Data-plane health of environments: sampled alarms, DLQ depths and file outcomes (§8)."""
