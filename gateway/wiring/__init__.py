"""Composition-root helpers, one module per integration dialect."""
