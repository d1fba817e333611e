"""Claims-based alignment projection (ACO REACH / MSSP style, SPEC §13, issue 23)."""
