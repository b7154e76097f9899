"""What every mapping is made of: a source schema, its line source, its place in the registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, fields

from ..intacct_fields import Record
from .fieldtypes import Key, Timestamp
from .records import flatten

# Every top-level record is requested with these: its identity and its version.
IDENTITY_FIELDS = (Record.KEY, Record.ID, Record.MODIFIED)
ACTIVE_STATUS = {"active": "active", "activeNonPosting": "active", "inactive": "inactive"}


class SourceSchema(Schema):
    """Loads a flat Intacct record (dotted names, see :mod:`.records`) into FlexPoint data.

    Fields read the Intacct field named by their ``data_key``; a field with metadata
    ``requested=False`` is read when present but not asked of the query service (the
    simulator does not serve it), and ``also_request`` names fields that hooks read.
    """

    class Meta:
        unknown = EXCLUDE

    also_request: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def requested_fields(cls) -> tuple[str, ...]:
        names = list(cls.also_request)
        for name, field in cls._declared_fields.items():
            if not isinstance(field, Lines) and field.metadata.get("requested", True):
                names.append(field.data_key or name)
        return tuple(dict.fromkeys(names))


class IdentitySchema(SourceSchema):
    """The item's envelope: externalId is the record's key, sourceVersion its modification time."""

    externalId = Key(data_key=Record.KEY, required=True)
    sourceVersion = Timestamp(data_key=Record.MODIFIED, required=True)


@dataclass(frozen=True)
class LineSource:
    """Where a resource's line records live and which of their fields to request."""

    rest_path: str  # e.g. accounts-receivable/invoice-line
    parent_field: str  # the line's pointer to its parent, e.g. invoice.key
    fields: tuple[str, ...]

    @property
    def name(self) -> str:
        """The line object's name, used in error messages: ``invoice-line[key=45].txnAmount``."""
        return self.rest_path.rsplit("/", 1)[-1]

    def parent_key(self, line: Mapping[str, Any]) -> str | None:
        """The key of the record a line (nested or flat) belongs to."""
        value = flatten(line).get(self.parent_field)
        return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None

    def group(self, lines: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
        """Line records fetched for many parents at once, by parent key (orphans dropped)."""
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for line in lines:
            parent = self.parent_key(line)
            if parent is not None:
                grouped.setdefault(parent, []).append(line)
        return grouped


class Lines(fields.List):
    """A record's line records (given to the mapping beside the record), each through ``schema``."""

    def __init__(
        self, schema: type[SourceSchema], *, rest_path: str, parent_field: str, **kwargs: Any
    ) -> None:
        requested = ("key", parent_field, *schema.requested_fields())
        self.source = LineSource(rest_path, parent_field, tuple(dict.fromkeys(requested)))
        super().__init__(fields.Nested(schema), data_key=self.source.name, required=True, **kwargs)


@dataclass(frozen=True)
class ResourceMapping:
    """One FlexPoint resource: the schema building its data, and which records it skips.

    A skipped record (a draft invoice) is not imported: it maps to a tombstone, so one that
    was imported before and became a draft leaves FlexPoint.
    """

    resource: str
    schema: type[SourceSchema]
    skip: Callable[[Mapping[str, Any]], bool] | None = None

    @property
    def lines(self) -> LineSource | None:
        for field in self.schema._declared_fields.values():
            if isinstance(field, Lines):
                return field.source
        return None

    @property
    def fields(self) -> tuple[str, ...]:
        """The Intacct fields (dotted) to request from the query service."""
        return tuple(dict.fromkeys((*IDENTITY_FIELDS, *self.schema.requested_fields())))


def state_is(*states: str, field: str = "state") -> Callable[[Mapping[str, Any]], bool]:
    """A skip rule: the flat record's ``field`` is one of ``states`` (case-insensitive)."""
    wanted = {state.casefold() for state in states}

    def matches(flat: Mapping[str, Any]) -> bool:
        value = flat.get(field)
        return isinstance(value, str) and value.strip().casefold() in wanted

    return matches


def natural_order(key: str) -> tuple[int, int, str]:
    """Sort keys: numeric keys by number (``9`` before ``10``), then any others as text."""
    if key.isascii() and key.isdigit():
        return (0, int(key), "")
    return (1, 0, key)
