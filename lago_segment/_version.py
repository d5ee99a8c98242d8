"""The installed version of lago-segment."""

__version__ = "0.1.0.dev0"
