"""Tinct: interactive photo colorization (optimization and learned engines)."""

__version__ = "0.1.0"
