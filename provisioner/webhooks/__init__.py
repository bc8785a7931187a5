"""Signed webhooks (docs/architecture.md §8): subscriptions, an outbox of deliveries written
in the same transaction as the events that cause them, and a dispatcher that sends them."""
