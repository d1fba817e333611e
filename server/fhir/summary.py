"""`_summary=true`: a resource reduced to the elements its base definition marks as summary.

FHIR R4 search (http://hl7.org/fhir/R4/search.html#summary, read 2026-12-03): the subset "SHOULD consist
solely of all supported elements that are marked as 'summary' in the base definition", and the resource is
tagged SUBSETTED. The summary flags come from the fhir.resources (R4B) models' element metadata. Only
top-level elements are reduced: nested elements marked non-summary inside a summary element are kept.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import orjson

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}


@lru_cache(maxsize=None)
def summary_elements(rtype: str) -> frozenset[str]:
    module = importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}")
    model = getattr(module, rtype)
    names = {name for name, field in model.model_fields.items()
             if (field.json_schema_extra or {}).get("summary_element_property")}
    return frozenset(names | {"resourceType"})


def summarise(rtype: str, content: bytes) -> bytes:
    resource = orjson.loads(content)
    keep = summary_elements(rtype)
    out = {key: value for key, value in resource.items() if key in keep}
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != SUBSETTED["code"]]
    meta["tag"] = [*tags, SUBSETTED]
    out["meta"] = meta
    return orjson.dumps(out)
