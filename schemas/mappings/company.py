"""Company: entities (multi-entity companies' locations that are entities)."""

from __future__ import annotations

from ..intacct_fields import Entity
from .base import ACTIVE_STATUS, ResourceMapping, SourceSchema
from .fieldtypes import Choice, Text


class EntitySchema(SourceSchema):
    entityId = Text(data_key=Entity.ID, required=True)
    name = Text(data_key=Entity.NAME, required=True)
    currency = Text(data_key=Entity.CURRENCY, load_default=None)
    status = Choice(ACTIVE_STATUS, data_key=Entity.STATUS, required=True)


MAPPINGS = (ResourceMapping("entities", EntitySchema),)
