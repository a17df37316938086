"""modelrunner: run scientific models on demand, on schedule and on any compute."""

__version__ = "0.1.0"
