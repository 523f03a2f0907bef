"""Training from a config: range checks, then the numpy core's training loop, then the files."""
