"""Intervention priority lists and their Task assignments (SPEC §13, issue 23 items 1-2)."""
