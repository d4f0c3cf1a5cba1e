"""reglight.callbacks."""

from reglight.callbacks.penalty import PenaltyHook as PenaltyHook
