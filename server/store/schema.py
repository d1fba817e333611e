"""Tables of the resource store.

Modelled on HAPI: one table of current resources, one of every version, and typed search-index
tables whose lookup keys are 64-bit hashes (see `hashing.py`), so each search predicate hits one
narrow b-tree. Every write transaction numbers its versions with one `txid` (PostgreSQL: its transaction
id; SQLite: the `write_counter` row), and readers of the log stop at the watermark below the oldest write
still in flight, which gives exact `_since` and stable paging (`resources.py`).

Index rows describe the current version only; they are replaced in the same transaction as the
resource they index.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

TYPE_LEN = 64
ID_LEN = 64

write_counter = Table(
    "write_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)

# PostgreSQL: what a write adds to its transaction id to give its txid; raised at start-up when a database
# restored into a younger cluster has stored txids beyond that cluster's transaction ids (0954, `db.migrate`).
txid_offset = Table(
    "txid_offset",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
)

# Keys a PostgreSQL write transaction claims (resources it reads, conditional queries) while it runs: a row
# lives from the claim until just before the commit, and a second claim of the key waits on the primary
# key until the first transaction ends (`resources.WriteTransaction.claim`). UNLOGGED there (0944).
write_claims = Table(
    "write_claims",
    metadata,
    Column("claim", BigInteger, primary_key=True, autoincrement=False),
)

resources = Table(
    "resources",
    metadata,
    Column("rtype", String(TYPE_LEN), primary_key=True),
    Column("rid", String(ID_LEN), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("txid", BigInteger, nullable=False),
    # meta.lastUpdated as microseconds since the epoch, for _lastUpdated search and sort.
    Column("lu", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # The resource as served (meta included); empty for a deleted resource.
    Column("content", LargeBinary, nullable=True),
    Index("ix_resources_txid", "txid"),
    Index("ix_resources_type_lu", "rtype", "lu", "rid"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("rtype", String(TYPE_LEN), primary_key=True),
    Column("rid", String(ID_LEN), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("txid", BigInteger, nullable=False),
    Column("lu", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    Index("ix_history_txid", "txid"),
    Index("ix_history_type_txid", "rtype", "txid"),
)

# Token parameters: code, identifier, boolean, uri. h_value = hash(type, param, code),
# h_sys_value = hash(type, param, system, code), h_sys = hash(type, param, system),
# h_param = hash(type, param) (used with `code` for the prefix matches of `:in`).
idx_token = Table(
    "idx_token",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),
    Column("rid", String(ID_LEN), nullable=False),
    Column("h_param", BigInteger, nullable=False),
    Column("h_value", BigInteger, nullable=False),
    Column("h_sys_value", BigInteger, nullable=False),
    Column("h_sys", BigInteger, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Index("ix_token_value", "h_value"),
    Index("ix_token_sys_value", "h_sys_value"),
    Index("ix_token_sys", "h_sys"),
    Index("ix_token_param_code", "h_param", "code", postgresql_ops={"code": "text_pattern_ops"}),
    Index("ix_token_res", "rtype", "rid", "h_param"),
)

# String parameters: value_norm is lower-cased and accent-stripped for the default prefix match.
idx_string = Table(
    "idx_string",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),
    Column("rid", String(ID_LEN), nullable=False),
    Column("h_param", BigInteger, nullable=False),
    Column("value_norm", Text, nullable=False),
    Column("value_exact", Text, nullable=False),
    Index("ix_string_norm", "h_param", "value_norm", postgresql_ops={"value_norm": "text_pattern_ops"}),
    Index("ix_string_res", "rtype", "rid"),
)

# Date parameters as closed ranges [lo, hi] in microseconds since the epoch (precision ranges).
idx_date = Table(
    "idx_date",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),
    Column("rid", String(ID_LEN), nullable=False),
    Column("h_param", BigInteger, nullable=False),
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Index("ix_date_lo", "h_param", "lo"),
    Index("ix_date_hi", "h_param", "hi"),
    Index("ix_date_res", "rtype", "rid", "h_param"),
)

# Number parameters: each value as stored (a point; the search value's precision makes the range, see
# `server.store.search`). Double precision: the R4 number elements are probabilities, factors and positions.
idx_number = Table(
    "idx_number",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),
    Column("rid", String(ID_LEN), nullable=False),
    Column("h_param", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_number_value", "h_param", "value"),
    Index("ix_number_res", "rtype", "rid", "h_param"),
)

# Reference parameters: local targets as (target_type, target_id); absolute URLs in target_url.
idx_reference = Table(
    "idx_reference",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),
    Column("rid", String(ID_LEN), nullable=False),
    Column("h_param", BigInteger, nullable=False),
    Column("target_type", String(TYPE_LEN), nullable=True),
    Column("target_id", String(ID_LEN), nullable=True),
    Column("target_url", Text, nullable=True),
    Index("ix_reference_target", "target_id", "target_type", "h_param"),
    Index("ix_reference_res", "rtype", "rid", "h_param"),
)

INDEX_TABLES = (idx_token, idx_string, idx_date, idx_number, idx_reference)

# Search parameters whose index rows must be (re)built from the stored resources: written by the
# migrations that add parameters (`migrations/reindex.py`) and by `planfit reindex`; emptied by the
# server that builds them at start (`server/fhir/reindex.py`).
reindex_request = Table(
    "reindex_request",
    metadata,
    Column("rtype", String(TYPE_LEN), primary_key=True),
    Column("code", String(64), primary_key=True),
)
