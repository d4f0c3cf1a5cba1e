"""reglight.penalties."""
