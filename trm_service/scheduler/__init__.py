"""Step-level continuous batching: per model version, one loop steps all of its requests as one batch."""
