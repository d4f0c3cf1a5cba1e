"""reglight.callbacks."""
