"""Persistence: tables, indexes, migrations, and the transactional resource store."""
