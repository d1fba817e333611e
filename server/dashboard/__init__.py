"""The PlanFit dashboard: a SMART on FHIR app served at /app/ (static assets shipped in this package)."""
