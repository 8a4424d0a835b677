"""The deployment test harness."""

__version__ = "0.6.0"
