"""reglight.nn."""
