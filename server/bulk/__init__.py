"""Bulk Data export (FHIR Bulk Data Access 2.0) as durable, database-backed jobs.

`kickoff` checks a request and turns it into a `plan`; `jobs` keeps job rows (claim, lease,
completion); `worker` threads claim jobs and `runner` executes one: a consistent snapshot, one
set-based `query` per type, rows streamed into `ndjson` files. `members` resolves Group
membership (pluggable); `service` is what the HTTP routes (`server.bulk.api`) call; `client`
and `commands` are `planfit export`.
"""
