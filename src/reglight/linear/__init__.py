"""reglight.linear."""
