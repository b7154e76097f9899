"""Helpers shared by the operations commands of cli/ops.py and workers/deadletters/commands.py: the decorator
that turns an :class:`~reliability.errors.OpsError` into click's one-line error, the message-selection
options (``--connection``, ``--resource``, ``--reason``, ``--since``, ``--until``, ``--limit``) and
the function that reads them into a :class:`~workers.deadletters.selection.Selection`; it imports no command
module, so both command modules can import it without a cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from reliability.errors import OpsError
from schemas.catalog import BY_RESOURCE
from workers.deadletters.selection import Selection, parse_moment


def ops_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an :class:`OpsError` into click's one-line error (exit status 1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OpsError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def selection_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The selection options shared by ``dead list``, ``replay`` and ``purge``."""
    options = [
        click.option("--connection", help="only this connection id"),
        click.option("--resource", type=click.Choice(sorted(BY_RESOURCE)), help="only this resource"),
        click.option("--reason", help="only this dead-letter reason (e.g. mapping_error)"),
        click.option("--since", help="from this time: ISO-8601 (UTC if no zone) or an age: 30m, 2h, 7d"),
        click.option("--until", help="before this time (same forms as --since)"),
        click.option("--limit", type=click.IntRange(min=0), help="at most this many messages"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def selection_of(kwargs: dict[str, Any], ids: tuple[str, ...] = ()) -> Selection:
    """Pop the options added by :func:`selection_filters` from ``kwargs`` into a selection."""
    return Selection(
        connection=kwargs.pop("connection"),
        resource=kwargs.pop("resource"),
        reason=kwargs.pop("reason"),
        since=parse_moment(kwargs.pop("since")),
        until=parse_moment(kwargs.pop("until")),
        limit=kwargs.pop("limit"),
        ids=ids,
    )
