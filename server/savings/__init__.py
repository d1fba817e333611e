"""Benchmark and savings arithmetic, REACH capitation margin and monthly payment assurance (SPEC §13)."""
