"""Company: entities (multi-entity companies' locations that are entities)."""

from __future__ import annotations

from .base import ACTIVE_STATUS, ResourceMapping, SourceSchema
from .fieldtypes import Choice, Text


class EntitySchema(SourceSchema):
    entityId = Text(data_key="id", required=True)
    name = Text(data_key="name", required=True)
    currency = Text(data_key="currency", load_default=None)
    status = Choice(ACTIVE_STATUS, data_key="status", required=True)


MAPPINGS = (ResourceMapping("entities", EntitySchema),)
