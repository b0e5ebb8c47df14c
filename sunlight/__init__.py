"""Sunlight: the application shell (command line, settings, the embedded runner)."""

__version__ = "0.1.0"
