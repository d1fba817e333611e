"""Server-maintained cohort Groups (SPEC §5), defined from the alignment findings."""
