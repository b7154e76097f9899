"""Intacct records between their two shapes: nested (a GET) and flat (a query row).

A GET answers ``{"customer": {"id": "C-1"}}``; a query row with the same field is
``{"customer.id": "C-1"}``. The mappings read the flat shape, so both work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(record: Mapping[Any, Any]) -> dict[str, Any]:
    """Nested or flat (or mixed) record -> {dotted name: value}.

    Null, empty and blank values are dropped: Intacct sends all three for "not set", and
    a mapping treats them alike, as absent. Lists stay whole under their name.
    """
    flat: dict[str, Any] = {}
    _walk("", record, flat)
    return flat


def _walk(prefix: str, node: Mapping[Any, Any], flat: dict[str, Any]) -> None:
    for name, value in node.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, Mapping):
            _walk(dotted + ".", value, flat)
        elif value is None or (isinstance(value, str) and not value.strip()):
            continue
        else:
            flat[dotted] = value


def unflatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """A query row keyed by dotted field names -> the nested record a GET would return.

    A requested prefix (``audit``) comes back as an object and merges with its dotted
    siblings (``audit.modifiedDateTime``). A name that is both a value and an object is a
    ValueError.
    """
    nested: dict[str, Any] = {}
    for name, value in row.items():
        *parents, leaf = str(name).split(".")
        node = nested
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"field {name!r} is below {part!r}, which is a value")
            node = child
        _put(node, leaf, value, name)
    return nested


def _put(node: dict[str, Any], leaf: str, value: Any, name: str) -> None:
    current = node.get(leaf)
    if isinstance(value, Mapping):
        if leaf in node and not isinstance(current, dict):
            raise ValueError(f"field {name!r} is both a value and an object")
        target = node.setdefault(leaf, {})
        for child_name, child in value.items():
            _put(target, str(child_name), child, f"{name}.{child_name}")
    elif isinstance(current, dict):
        raise ValueError(f"field {name!r} is both a value and an object")
    else:
        node[leaf] = value
