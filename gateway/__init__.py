"""Tablegate gateway: domain, storage, services and the composition root."""

__version__ = "0.1.0"
