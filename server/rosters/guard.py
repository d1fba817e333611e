"""The `FhirService` write guard of attribution lists: every write of a Group (PUT, POST, DELETE,
conditional, transaction entry, and the roster operations' own header versions) passes here with its
final content, so the list rules hold whatever the path.

* An attribution list conforms to the ATR Group's fixed parts: `type` person, `actual` true, one
  `managingEntity` (the organization whose clients are entitled to it: `system/Group.*?managing-entity=…`
  scopes), a known `attributionListStatus`.
* Its members live in `roster_members` and change through the operations ($member-add, $member-remove,
  $member-decision, $roster-import), so a written Group carries no `member` array.
* A stored `final` list refuses every write (409): it is the locked roster later ones are compared with.
"""

from __future__ import annotations

import orjson

from server.fhir.errors import FhirError
from server.rosters.atr import STATUSES, is_attribution_list, list_status, refuse_if_final
from server.store.resources import Store


class AttributionListGuard:
    def __init__(self, store: Store):
        self.store = store

    def __call__(self, rtype: str, rid: str, method: str, resource: dict | None) -> None:
        if rtype != "Group":
            return
        # A write claims the resource it replaces before guards run (`WriteTransaction.current`), so no
        # other writer of it commits meanwhile: the stored version read here is the one it replaces.
        stored = self.store.read("Group", rid)
        if stored is not None and not stored.deleted and stored.content is not None:
            current = orjson.loads(stored.content)
            if is_attribution_list(current):
                refuse_if_final(list_status(current), rid, method)
        if resource is not None and is_attribution_list(resource):
            _check_shape(resource)


def _check_shape(group: dict) -> None:
    status = list_status(group)
    if status not in STATUSES:
        raise _unprocessable(f"attributionListStatus must be one of {', '.join(STATUSES)}", "Group.extension")
    if group.get("type") != "person" or group.get("actual") is not True:
        raise _unprocessable("An ATR Group lists persons: type 'person' and actual true", "Group.type")
    entity = group.get("managingEntity")
    if not (isinstance(entity, dict) and isinstance(entity.get("reference"), str)):
        raise _unprocessable("An ATR Group names its managingEntity (the Organization it is managed for)",
                             "Group.managingEntity")
    if group.get("member"):
        raise _unprocessable("Members of an attribution list change through $member-add, $member-remove, "
                             "$member-decision and $roster-import, not in the Group body", "Group.member")


def _unprocessable(message: str, expression: str) -> FhirError:
    return FhirError.of(422, "business-rule", message, expression)
