"""PlanFit tests: one package per server package (tests/<package>/), shared helpers in tests/support/."""
