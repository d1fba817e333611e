"""Shared test support: the test servers and their clients (`servers`), the in-process tier (`inprocess`)."""
