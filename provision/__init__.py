"""provision: cloud object storage for self-hosted computer-vision platforms, in one command."""

__version__ = "0.1.0"
