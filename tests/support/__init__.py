"""Shared test support: the in-process tier (`inprocess`). The server-process tier lives in tests/conftest.py."""
