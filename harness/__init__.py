"""The deployment test harness."""

__version__ = "0.7.0"
