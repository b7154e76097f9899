"""Where the write-back's CPU per posting goes: one thread, no latency, no other worker, profiled.

    .venv/bin/python bench/writeback_profile.py [--payments 600] [--companies 4] [--profile] [--top 25]

P6's run (``bench/writeback.py``) measures the CPU of whole processes under load, where the
machine's other processes, 40 threads and the GIL make the figure move by a millisecond or more
between runs. This run sets up the same books (``bench.writeback.set_up``), builds the writeback
process's handler as ``flexsync writeback`` does, and hands it the payments one after another in
this thread: the CPU per posting is this process's CPU time over the postings (the simulators run
in processes of their own), steady to a few percent. ``--profile`` adds cProfile's view of the
same run, the functions that cost the most, by their own time and with what they call.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.backfill import CLIENT_SECRET, TOKEN  # noqa: E402
from bench.common import RunFailed, figure, progress  # noqa: E402
from bench.writeback import run_with_books, set_up  # noqa: E402

WARM_UP = 20  # postings before the clock starts: tokens fetched, pools and caches filled


def run(stack: contextlib.ExitStack, args: argparse.Namespace) -> int:
    from config.settings import Settings
    from observability.logging import configure_logging
    from processes.writeback import build
    from workers.writeback.messages import POST_ROUTING_KEY

    books = set_up(
        stack, companies=args.companies, payments=args.payments + WARM_UP, latency_ms=0,
        amqp_url=args.amqp_url,
    )  # fmt: skip
    settings = Settings(
        flexsync_env="test", amqp_url=books.amqp_url, database_url=books.database_url,
        flexsync_secret_key=(books.key,), intacct_api_url=f"{books.sims.intacct}/ia/api/v1",
        intacct_client_secret=CLIENT_SECRET, flexpoint_api_url=books.sims.flexpoint,
        flexpoint_api_token=TOKEN, log_level="WARNING",
    )  # fmt: skip
    configure_logging(settings)  # as the process logs: warnings and errors only
    writeback = build(settings, workers=1)
    stack.callback(writeback.close)
    handler = writeback.consumer.handler
    requested_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    bodies = [{**message, "requestedAt": requested_at} for message in books.messages]

    def post(body: dict) -> None:
        failure = handler.handle(POST_ROUTING_KEY, body, attempts=0)
        if failure is not None:
            raise RunFailed(f"payment {body['paymentId']} not posted: {failure.reason}: {failure.exception}")

    for body in bodies[:WARM_UP]:
        post(body)
    measured = bodies[WARM_UP:]
    progress(f"posting {len(measured)} payments in one thread")
    # Timed by this process's CPU clock, not the wall: time waiting for a simulator costs no CPU.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    cpu, wall = time.process_time(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    with counting_statements(writeback.engine if args.statements else None) as statements:
        for body in measured:
            post(body)
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    figure(
        f"write-back CPU per posting, one thread, no latency: {cpu / len(measured) * 1000:.2f} ms "
        f"({len(measured)} postings over {args.companies} companies; {wall / len(measured) * 1000:.2f} ms "
        f"each from first to last{', under cProfile' if profiler else ''})"
    )
    if statements:
        lines = [f"{n / len(measured):5.2f}  {sql}" for sql, n in statements.most_common()]
        figure("database statements per posting:\n" + "\n".join(lines))
    if profiler is not None:
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.top)
            figure(out.getvalue())
    return 0


@contextlib.contextmanager
def counting_statements(engine: Any) -> Iterator[Counter[str]]:
    """Count the statements sent through ``engine`` in the block, by their first 100 characters."""
    seen: Counter[str] = Counter()
    if engine is None:
        yield seen
        return

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[" ".join(statement.split())[:100]] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--companies", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="add cProfile's breakdown")
    parser.add_argument("--top", type=int, default=25, help="functions listed per ordering")
    parser.add_argument("--statements", action="store_true", help="list the database statements per posting")
    return run_with_books(parser, "bench/writeback_profile.py", run)


if __name__ == "__main__":
    sys.exit(main())
