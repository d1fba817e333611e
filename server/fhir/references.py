"""Finding and rewriting the literal references inside a resource (at any depth)."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

# `Type?param=value`: a conditional reference, resolved by search inside a transaction.
CONDITIONAL_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+\?.+")


def iter_references(node: Any) -> Iterator[dict]:
    """Every Reference-shaped object (a dict with a string `reference`), in contained resources too."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                yield item
            for value in item.values():
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))


def rewrite_references(resource: dict, resolve: Callable[[str], str | None]) -> None:
    """Replace each reference for which `resolve` returns a new value, in place."""
    for ref in iter_references(resource):
        new = resolve(ref["reference"])
        if new is not None:
            ref["reference"] = new
