"""Training: data pipeline, loop with checkpoints, weight export."""
