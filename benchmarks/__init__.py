"""Measured, not asserted: what the proxy costs a caller (`make bench`, see __main__.py)."""
