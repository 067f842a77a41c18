"""troupe.supervisors."""
