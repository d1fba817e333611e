"""`planfit load`: post FHIR data to any FHIR server, resumably, with a progress bar.

Inputs (`inputs.py`) become units, each one request: a transaction or batch bundle file as it is, a
single-resource JSON file wrapped in a one-entry transaction, and an NDJSON file cut into transactions
of `--batch` resources (PUT when the resource has an id, so ids and references survive, else POST).
Units are posted by a few threads at once (`post.py`: retries of transient failures, OperationOutcome of
rejections); `run.py` records every finished unit in a state file, so a second run skips them.
"""
