"""troupe.brokers."""
