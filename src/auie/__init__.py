"""AUIE, the Adaptive User Interaction Engine."""

__version__ = "0.1.0"
