"""The edges: data, the config schema, checkpoints, tracking, plots and files."""
