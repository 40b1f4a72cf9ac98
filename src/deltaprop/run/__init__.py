"""Drivers: the only code that reads a DictConfig (setup, engines, the epoch loop, train)."""
