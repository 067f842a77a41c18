"""Runnable examples that ship with troupe (``troupe demo`` runs the order system)."""
