"""Measures (SPEC §5): the seeded definitions in `profiles/` and `$evaluate-measure` over the findings."""
