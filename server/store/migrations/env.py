"""Alembic environment: PlanFit always passes an open connection (see server.store.db.migrate)."""

from alembic import context

import server.store.auth_schema  # noqa: F401  (registers the auth and audit tables on `metadata`)
import server.store.bulk_schema  # noqa: F401  (registers the Bulk Data export tables on `metadata`)
import server.store.alignment_schema  # noqa: F401  (registers the alignment findings tables on `metadata`)
import server.store.cohort_schema  # noqa: F401  (registers the cohort membership table on `metadata`)
import server.store.roster_schema  # noqa: F401  (registers the roster tables on `metadata`)
from server.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
