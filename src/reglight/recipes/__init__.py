"""reglight.recipes."""
