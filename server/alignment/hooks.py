"""The alignment engine's hook points, which other features implement (see `server/fhir/features.py`).

* `POST_EVALUATION`: inside an evaluation's transaction, after its findings are written: (connection,
  the members evaluated, the statement parameters binding them). What it writes commits with the
  findings (the cohort Groups' membership).
* `EVALUATED`: after an evaluation: its kind (`full` | `incremental`) and its duration in seconds.
* `ALIGNMENT_PARAMETERS`: parameters to add to a member's `$alignment` answer, from its finding (risk
  adjustment adds the second lever).
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Connection

from server.alignment.facts import Members
from server.fhir.features import HookPoint

EvaluationListener = Callable[[Connection, Members, dict[str, object]], None]
EvaluationObserver = Callable[[str, float], None]
AlignmentParameters = Callable[[Any], list[dict]]

# Bound in every evaluation's statement parameters: the `begin_versions` of its transaction, for a
# POST_EVALUATION listener that writes versions to the store's log (`append_versions`).
VERSION_TXID, VERSION_LU = "version_txid", "version_lu"

POST_EVALUATION: HookPoint[EvaluationListener] = HookPoint("post_evaluation")
EVALUATED: HookPoint[EvaluationObserver] = HookPoint("evaluated")
ALIGNMENT_PARAMETERS: HookPoint[AlignmentParameters] = HookPoint("alignment_parameters")
