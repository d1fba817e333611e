"""Enrollment audit, encounter completeness and denial root cause (SPEC §12): the worklist, quarterly audits and
denied-claim classification, with their routes, tables and commands."""
