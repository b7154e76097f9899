"""What bench/receiver.py loads its servers with, and what wrk measured: the ~600-byte webhook
body bench/wrk/webhook.lua sends around each delivery's key, and one wrk run's result."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

COMPANY = "BENCH-CO"
BODY_BYTES = 600
# The servers loaded, in the order of the odd rounds.
KINDS = ("bare", "floor", "receiver")


@dataclass
class WrkResult:
    """One wrk run: what bench/wrk/webhook.lua wrote at its end, and what was read of the server
    and the machine around it."""

    label: str
    requests: int
    seconds: float
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_us: dict[str, int]
    # CPU seconds spent during the run by the server's processes and by RabbitMQ.
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    # wrk's connections held by each gunicorn worker, and the starts it took to get that split.
    split: list[int] = dataclasses.field(default_factory=list)
    attempts: int = 1
    # The share of the machine's CPU time the hypervisor gave to other guests during the run.
    steal: float | None = None
    # Thread switches of the server's gunicorn workers during the run (None: not counted).
    switches: int | None = None

    @classmethod
    def load(cls, label: str, path: Path) -> WrkResult:
        data = json.loads(path.read_text())
        return cls(
            label=label,
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            statuses={int(code): count for code, count in data["statuses"].items()},
            errors=data["errors"],
            latency_us=data["latency_us"],
        )

    @property
    def ok(self) -> int:
        return sum(count for code, count in self.statuses.items() if 200 <= code < 300)

    @property
    def not_ok(self) -> int:
        return sum(count for code, count in self.statuses.items() if not 200 <= code < 300)

    @property
    def socket_errors(self) -> int:
        return sum(self.errors[name] for name in ("connect", "read", "write", "timeout"))

    @property
    def ok_rate(self) -> float:
        """2xx answers per second: a fast refusal must not count as throughput."""
        return self.ok / self.seconds if self.seconds else 0.0

    def cpu_per_answer_us(self, name: str) -> float:
        """CPU microseconds ``name``'s processes spent per answer during the run."""
        return self.cpu.get(name, 0.0) / self.requests * 1e6 if self.requests else 0.0

    def switches_per_answer(self) -> float | None:
        return self.switches / self.requests if self.switches is not None and self.requests else None

    def ms(self, name: str) -> float:
        return self.latency_us[name] / 1000.0

    def describe(self) -> str:
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(self.statuses.items())) or "none"
        text = (
            f"{self.label}: {self.ok_rate:,.0f} 2xx/s ({self.requests:,} answers in {self.seconds:.1f} s), "
            f"p50 {self.ms('p50'):.1f} ms, p99 {self.ms('p99'):.1f} ms, max {self.ms('max'):.1f} ms; "
            f"statuses {codes}"
        )
        if self.socket_errors:
            text += f"; socket errors {self.errors}"
        if self.split:
            text += f"; connections per worker {'/'.join(map(str, self.split))}"
            if self.attempts > 1:
                text += f" (start {self.attempts})"
        if self.steal is not None:
            text += f"; steal {self.steal:.1%}"
        if self.cpu and self.requests:
            text += "; CPU per answer: " + ", ".join(
                f"{name} {seconds / self.requests * 1e6:,.0f} us" for name, seconds in self.cpu.items()
            )
        switches = self.switches_per_answer()
        if switches is not None:
            text += f"; thread switches per answer {switches:.1f}"
        return text


def webhook_body_template() -> tuple[str, str]:
    """A Platform Trigger body of ~600 bytes around its record key, split at the key."""
    marker = "\x00KEY\x00"
    body = {
        "object": "ARINVOICE",
        "action": "set",
        "key": marker,
        "id": "INV-BENCH",
        "companyId": COMPANY,
        "occurredAt": "2026-11-24T10:00:00Z",
        "docNumber": "INV-2026-004211",
        "customerId": "C-10042",
        "customerName": "Northwind Traders Ltd",
        "state": "Posted",
        "currency": "USD",
        "totalAmount": "12450.00",
        "totalDue": "12450.00",
        "termName": "Net 30",
        "whenCreated": "2026-11-24T09:58:12Z",
        "dueDate": "2026-12-24",
        "locationId": "100",
        "departmentId": "SALES",
        "modifiedBy": "jsmith",
        "description": "",
        "memo": "",
    }
    # Size the padding for a typical key ("<thread>-<counter>", ~7 characters).
    size = len(json.dumps(body).replace(json.dumps(marker)[1:-1], "1-12345").encode())
    body["description"] = "Monthly service invoice " + "x" * max(0, BODY_BYTES - size - 24)
    text = json.dumps(body)
    prefix, suffix = text.split(json.dumps(marker)[1:-1])
    return prefix, suffix
