"""bench/sync.py's correctness checks after each drain: FlexPoint holds every touched record, each
record it holds equals what the project's mapping makes of Intacct's now, and every queue is
empty with no consumer attached, nothing dead-lettered."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterable
from typing import Any

from bench.common import loud
from bench.sync_events import LINE_OBJECTS, OBJECTS, Target
from bench.sync_report import Verdict
from bench.sync_stage import SyncStage

DEAD_LETTER = "dead-letter"


class Correctness(SyncStage):
    """The checks, with Intacct's records read and mapped once per run (the drains leave them be)."""

    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        super().__init__(args, stack)
        self.verdicts: list[Verdict] = []
        self._mapped: dict[tuple[int, str, str], Any] = {}
        self._intacct_data: list[dict[str, Any]] | None = None

    def broker_check(self) -> tuple[bool, str]:
        """After the consumers are gone: every queue empty, hence nothing unacknowledged either.

        A message a consumer held unacknowledged goes back to ready when its channel closes, so
        with no consumer attached the ready count is the whole content. (``rabbitmqctl
        list_queues`` is no help here: for quorum queues its counts are metrics emitted every few
        seconds, not the queue's state.)
        """
        from kombu import Connection

        with Connection(self.amqp_url, connect_timeout=5) as connection:
            channel = connection.channel()
            deadline = time.monotonic() + 5
            while True:
                state = self.queue_state(channel)
                attached = {name: c for name, (_, c) in state.items() if c}
                if not attached or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        holding = {name: ready for name, (ready, _) in state.items() if ready}
        dead = state.get(DEAD_LETTER, (0, 0))[0]
        problems = []
        if holding:
            problems.append(
                "queues hold messages (" + ", ".join(f"{n} {r}" for n, r in sorted(holding.items())) + ")"
            )
        if attached:
            problems.append(f"consumers still attached ({attached})")
        if not problems:
            return (
                True,
                "every queue empty with no consumer attached (so nothing unacknowledged), 0 dead-lettered",
            )
        return False, "; ".join(problems) + f"; {dead} dead-lettered"

    def expected(self, index: int, resource: str, key: str) -> Any:
        """The item Intacct's record maps to now (map_record), or an exception's text."""
        from schemas.mappings import MappingError, line_source, map_record

        if self._intacct_data is None:
            data = []
            for company in self.companies:
                records = {
                    r: {str(x["key"]): x for x in self._records(company, p)} for r, p in OBJECTS.items()
                }
                lines = {}
                for resource_name, path in LINE_OBJECTS.items():
                    source = line_source(resource_name)
                    lines[resource_name] = source.group(self._records(company, path)) if source else {}
                data.append({"records": records, "lines": lines})
            self._intacct_data = data
        cache_key = (index, resource, key)
        if cache_key not in self._mapped:
            company = self._intacct_data[index]
            record = company["records"][resource].get(key)
            if record is None:
                self._mapped[cache_key] = "not in Intacct"
            else:
                try:
                    self._mapped[cache_key] = map_record(
                        resource, record, company["lines"].get(resource, {}).get(key, ())
                    )
                except MappingError as exc:
                    self._mapped[cache_key] = f"unmappable: {exc}"
        return self._mapped[cache_key]

    def verify(self, label: str, targets: Iterable[Target]) -> Verdict:
        """FlexPoint holds every touched record, and every record it holds equals Intacct's."""
        from sandbox.flexpoint.versions import parse_timestamp

        stored = self.flexpoint_records()
        touched = {(t.company, t.resource, t.key) for t in targets}
        missing = sorted(touched - set(stored))
        wrong = []
        for where, record in stored.items():
            item = self.expected(*where)
            if not isinstance(item, dict):
                wrong.append((where, item))
                continue
            same = (
                bool(record["deleted"]) == bool(item.get("deleted", False))
                and parse_timestamp(record["sourceVersion"]).key == parse_timestamp(item["sourceVersion"]).key
                and (record["deleted"] or record["data"] == json.loads(json.dumps(item["data"])))
            )
            if not same:
                wrong.append((where, "differs from Intacct's"))
        broker_ok, broker_text = self.broker_check()
        if not self.broker_still_up():
            broker_ok, broker_text = False, broker_text + " (RABBITMQ WENT AWAY DURING THE RUN)"
        ok = not missing and not wrong and broker_ok
        extra = len(set(stored) - touched)
        text = (
            f"{len(touched):,} touched records all in FlexPoint"
            if not missing
            else f"{len(missing):,} of {len(touched):,} touched records MISSING from FlexPoint"
        )
        text += (
            f"; {len(stored):,} stored ({extra:,} besides the touched, e.g. invoices refreshed by payments), "
        )
        text += "all equal to Intacct's" if not wrong else f"{len(wrong):,} DIFFERENT from Intacct's"
        text += f"; {broker_text}"
        if missing:
            loud(f"{label}: missing from FlexPoint, e.g. {missing[:5]}")
        if wrong:
            sample = wrong[0]
            loud(
                f"{label}: FlexPoint differs from Intacct, e.g. {sample[0]}: {sample[1]}; stored {stored[sample[0]]}"
            )
        if not broker_ok:
            loud(f"{label}: {broker_text}")
        verdict = Verdict(label, ok, text)
        self.verdicts.append(verdict)
        return verdict
