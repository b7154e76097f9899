"""The one exception a mapping raises: this record cannot become a FlexPoint item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reliability.errors import Permanent


class MappingError(Permanent):
    """An Intacct record that cannot be mapped; permanent, so the worker dead-letters it.

    ``errors`` maps each offending Intacct field (dotted, as Intacct names it; line fields
    as ``invoice-line[key=45].txnAmount``) to what is wrong with it.
    """

    reason = "mapping_error"

    def __init__(self, resource: str, key: str | None, errors: Mapping[str, Sequence[str]]) -> None:
        self.resource = resource
        self.key = key
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__(self.describe())

    def describe(self) -> str:
        record = (
            f"{self.resource} record key {self.key}" if self.key else f"{self.resource} record without a key"
        )
        problems = "; ".join(
            f"{field}: {' '.join(m.rstrip('.') for m in messages)}"
            for field, messages in sorted(self.errors.items())
        )
        return f"cannot map {record}: {problems}"

    def __reduce__(self):  # type: ignore[override]
        # Exceptions pickle their args by default; ours are the constructor's, not the message.
        return (type(self), (self.resource, self.key, self.errors))
