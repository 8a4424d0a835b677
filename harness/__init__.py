"""The deployment test harness."""

__version__ = "0.5.0"
