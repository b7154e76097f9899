"""marshmallow fields that read Intacct values and yield FlexPoint's.

Each field's ``data_key`` is the Intacct field it reads (a dotted name of the flat record);
its attribute is the FlexPoint name it fills. Errors therefore name the Intacct field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from . import values


class Text(fields.Field):
    """Text as Intacct sends it; a number is taken as its decimal text (ids sent unquoted)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ValidationError(f"not text: {values.shown(value)}")
        return value


class Key(Text):
    """A record key (RECORDNO): text of at most 200 characters, FlexPoint's externalId limit."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text or len(text) > 200:
            raise ValidationError(f"not a record key (1 to 200 characters): {values.shown(value)}")
        return text


class Money(fields.Field):
    """An amount as a 2-decimal string, rounded half-even (see :mod:`.values`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return _converted(values.money, value)


class CalendarDate(fields.Field):
    """A date or date-time as ``YYYY-MM-DD``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return _converted(values.calendar_date, value)


class Last4(fields.Field):
    """An account number reduced to its last 4 digits (None below 4 digits). QUALITY S3."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        return _converted(values.last4, value)


class Timestamp(fields.Field):
    """A moment as RFC 3339 UTC with ``Z`` (sourceVersion)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return _converted(values.utc_timestamp, value)


class LineNumber(fields.Field):
    """A line number: an integer, or its digits as text (never a bool or a fraction)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return int(value.strip())
        raise ValidationError(f"not a line number: {values.shown(value)}")


class Choice(fields.Field):
    """An Intacct enumeration translated through ``mapping`` (matched case-insensitively)."""

    def __init__(self, mapping: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mapping = {name.casefold(): target for name, target in mapping.items()}
        self.expected = ", ".join(mapping)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str) and value.strip().casefold() in self.mapping:
            return self.mapping[value.strip().casefold()]
        raise ValidationError(f"unknown value {values.shown(value)} (expected one of: {self.expected})")


def _converted(convert: Any, value: Any) -> Any:
    try:
        return convert(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
