"""Sequence answers: an autoregressive TRM refining each output character, with its data, loops and training."""
