"""The console's audit trail: every action, who took it, on what selection, when, and its outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from store.db import write_transaction
from store.models import ConsoleAudit


class AuditLog:
    """Writes and reads ``console_audit``; an action is recorded when it starts and finished after."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, actor: str, action: str, selection: str, outcome: str) -> int:
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                insert(ConsoleAudit)
                .values(
                    at=datetime.now(UTC),
                    actor=actor[:200],
                    action=action[:64],
                    selection=selection,
                    outcome=outcome,
                )
                .returning(ConsoleAudit.id)
            )
            return result.scalar_one()

    def finish(self, entry_id: int, outcome: str) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(update(ConsoleAudit).where(ConsoleAudit.id == entry_id).values(outcome=outcome))

    def recent(self, limit: int = 200) -> list[ConsoleAudit]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(ConsoleAudit).order_by(ConsoleAudit.id.desc()).limit(limit)).all()
        return [ConsoleAudit(**row._mapping) for row in rows]
