"""deltaprop's Hydra configs, shipped inside the package as `deltaprop.conf` (pyproject.toml maps
this directory there), so an installed deltaprop finds them through `pkg://deltaprop.conf`."""
