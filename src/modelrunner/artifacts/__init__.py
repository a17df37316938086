"""Object storage for model snapshots and run outputs (any fsspec URL), and run logs."""
