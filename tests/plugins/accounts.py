"""Pytest fixtures (filled in as the features land)."""
