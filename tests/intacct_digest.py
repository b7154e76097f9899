"""Sage's published Intacct schema, read from the OpenAPI digests in ``shared/spec/intacct-openapi``.

The digests are Markdown: one section per object (its heading names ``objects.<area>.<object>``)
with a field table whose first column holds dotted paths. Several spellings share a row, and this
module expands them all: ``a.key`` / ``.id`` (siblings), ``a`` (+ ``.key``, ``.id``) (children),
``a.{x, y}`` (braces), ``a.x`` / ``y`` (siblings), an ``object {key, id, href RO}`` type cell
(children), and the shared ``$ref`` schemas the digests describe once in their section 1
(``audit.s1``, ``entity-ref``, ``dimension-ref``, the ``*-ref`` objects, ``currency``).

Nothing here comes from the product or the simulator: only the digests' text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DIGESTS = ("accounts-receivable.md", "general-ledger-cash-management-company.md")

_OBJECT = re.compile(r"objects\.([a-z-]+)\.([a-z-]+)")
_TICKED = re.compile(r"`([^`]+)`")
_BRACES = re.compile(r"^(.*?)\{([^}]*)\}$")

# Section 1 of the digests ("Shared schemas"): the members of each shared $ref, as they list them.
_USER = ("key", "id", "href")
AUDIT_S1 = (
    "createdDateTime",
    "modifiedDateTime",
    "createdBy",
    "modifiedBy",
    "createdByUser",
    *(f"createdByUser.{m}" for m in _USER),
    "modifiedByUser",
    *(f"modifiedByUser.{m}" for m in _USER),
)
REF_MEMBERS = ("key", "id", "name", "href")
DIMENSIONS = (
    "location",
    "department",
    "employee",
    "project",
    "customer",
    "vendor",
    "item",
    "warehouse",
    "class",
    "task",
    "costType",
    "asset",
    "contract",
    "affiliateEntity",
    "loanAccount",
    "workOrder",
)
CURRENCY = ("exchangeRateDate", "exchangeRateTypeId", "exchangeRate", "baseCurrency", "txnCurrency")


def _shared(ref: str) -> tuple[str, ...]:
    if ref.startswith("audit.s"):
        return AUDIT_S1
    if ref == "dimension-ref":
        return (*DIMENSIONS, *(f"{d}.{m}" for d in DIMENSIONS for m in REF_MEMBERS))
    if ref == "currency":
        return CURRENCY
    if ref.endswith("-ref"):
        return REF_MEMBERS
    return ()


@dataclass
class Field:
    """One published field: its path, enum values, maxLength and whether it is read-only."""

    path: str
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    read_only: bool = False


@dataclass
class PublishedObject:
    name: str  # e.g. accounts-receivable/payment
    fields: dict[str, Field] = field(default_factory=dict)

    def add(self, path: str, **facts: object) -> None:
        if path not in self.fields:
            self.fields[path] = Field(path, **facts)  # type: ignore[arg-type]


def find_spec_dir(start: Path | None = None) -> Path | None:
    """The ``shared/spec`` folder nearest above ``start`` (this file), or ``FLEXSYNC_SPEC_DIR``."""
    if os.environ.get("FLEXSYNC_SPEC_DIR"):
        given = Path(os.environ["FLEXSYNC_SPEC_DIR"])
        return given if (given / "intacct-openapi").is_dir() else None
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "spec"
        if (candidate / "intacct-openapi").is_dir():
            return candidate
    return None


def _paths(cell: str) -> list[str]:
    """Every dotted path a first-column cell names."""
    tokens = _TICKED.findall(cell)
    if not tokens:
        return []
    first = tokens[0]
    out = _expand(first)
    children = "(+" in cell
    parent = first.rsplit(".", 1)[0] if "." in first else ""
    for token in tokens[1:]:
        token = token.split(" ")[0]
        if token.startswith("."):
            base = first if children else parent
            out.extend(_expand(f"{base}{token}" if base else token[1:]))
        elif re.fullmatch(r"[A-Za-z0-9]+", token):
            out.extend(_expand(f"{parent}.{token}" if parent else token))
    return out


def _expand(token: str) -> list[str]:
    token = token.strip()
    match = _BRACES.match(token)
    if match:
        prefix, members = match.groups()
        return [f"{prefix}{m.strip()}" for m in members.split(",") if m.strip()]
    return [token]


def _object_members(type_cell: str) -> list[str]:
    """The members an ``object {key, id nullable; href RO}`` type cell lists."""
    match = re.search(r"object[^{]*\{([^}]*)\}", type_cell)
    if not match:
        return []
    names = []
    for item in re.split(r"[,;]", match.group(1)):
        word = re.match(r"\s*`?([A-Za-z][A-Za-z0-9]*)`?", item)
        if word:
            names.append(word.group(1))
    return names


def _refs(type_cell: str) -> list[str]:
    return re.findall(r"\$ref ([a-z0-9.-]+)|`(audit\.s\d|[a-z-]+-ref)`", type_cell) and [
        a or b for a, b in re.findall(r"\$ref ([a-z0-9.-]+)|`(audit\.s\d|[a-z-]+-ref)`", type_cell)
    ]


def parse(text: str) -> dict[str, PublishedObject]:
    """Every object of one digest, by ``<area>/<object>``."""
    objects: dict[str, PublishedObject] = {}
    current: PublishedObject | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            match = _OBJECT.search(line)
            if match:
                name = f"{match.group(1)}/{match.group(2)}"
                current = objects.setdefault(name, PublishedObject(name))
            else:
                current = None
            continue
        if current is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or "Path" in cells[0]:
            continue
        type_cell, enum_cell, ro_cell, length_cell = cells[1], cells[2], cells[3], cells[4]
        enum = tuple(v for v in _TICKED.findall(enum_cell) if v != "null")
        length = re.search(r"^\**(\d+)\**$", length_cell)
        read_only = "RO" in ro_cell and "not RO" not in ro_cell
        for path in _paths(cells[0]):
            if "<" in path:
                continue  # placeholders such as requireDimensions.<dim>
            current.add(
                path, enum=enum, max_length=int(length.group(1)) if length else None, read_only=read_only
            )
            for member in _object_members(type_cell):
                current.add(f"{path}.{member}")
            for ref in _refs(type_cell):
                for member in _shared(ref):
                    current.add(f"{path}.{member}")
    return objects


def load(spec_dir: Path) -> dict[str, PublishedObject]:
    """Every object of both digests."""
    objects: dict[str, PublishedObject] = {}
    for name in DIGESTS:
        objects.update(parse((spec_dir / "intacct-openapi" / name).read_text(encoding="utf-8")))
    return objects


def required_payment_create(spec_dir: Path) -> dict[str, object]:
    """``accounts-receivable-paymentRequiredProperties`` (digest §4), as rules a body can be held to:
    ``one_of`` pairs, ``nested`` {object: [required members]}, ``detail`` [required per detail],
    ``detail_nested`` {object: [members]}."""
    text = (spec_dir / "intacct-openapi" / "accounts-receivable.md").read_text(encoding="utf-8")
    block = text.split("accounts-receivable-paymentRequiredProperties:", 1)[1].split("\n\n", 1)[0]
    details, rest = block.split("paymentSummary:", 1)
    rest = "paymentSummary:" + rest
    nested = re.compile(r"(\w+): \{type: object, required: \[([\w, ]+)\]\}")
    return {
        "one_of": [
            tuple(p) for p in re.findall(r"oneOf: \[\{required: \[(\w+)\]\}, \{required: \[(\w+)\]\}\]", rest)
        ],
        "nested": {k: [m.strip() for m in v.split(",")] for k, v in nested.findall(rest)},
        "detail": [m.strip() for m in re.findall(r"\},\s*required: \[([\w, ]+)\]\}", details)[0].split(",")],
        "detail_nested": {k: [m.strip() for m in v.split(",")] for k, v in nested.findall(details)},
    }


def required_workflow(spec_dir: Path, heading: str) -> list[str]:
    """The ``required`` list of a workflow request (digest §3), found under ``heading``."""
    text = (spec_dir / "intacct-openapi" / "accounts-receivable.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"required: \[([^\]]*)\]", section)
    assert match, f"no required list under {heading}"
    return [v.strip(" `") for v in match.group(1).split(",")]
