"""The CLI speaks to a person: a tool's prompts and reports are not interleaved with JSON log lines."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest

from broker.topology import DEAD_LETTER_QUEUE_NAME, work_queue_name
from cli.context import PROCESS_COMMANDS, command_name, logging_settings
from cli.processes import provisioning
from config import load_settings
from schemas.catalog import BY_RESOURCE
from store.db import create_engine_for
from tests.conftest import wait_until
from workers.deadletters.store import DeadLetterStore, LetterQuery
from workers.runtime.failures import Failure, destination

ROOT = Path(__file__).resolve().parent.parent


def _json_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        try:
            if isinstance(json.loads(line.strip()), dict):
                lines.append(line)
        except ValueError:
            continue
    return lines


def test_tools_log_warnings_to_the_console_unless_asked():
    settings = load_settings({"FLEXSYNC_ENV": "development", "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"})
    quiet = logging_settings(settings, "purge", 0)
    assert (quiet.log_level, quiet.log_format) == ("WARNING", "console")
    assert logging_settings(settings, "replay", 1).log_level == "INFO"
    assert logging_settings(settings, "connections", 2).log_level == "DEBUG"
    assert logging_settings(settings, "dead", 5).log_level == "DEBUG"


@pytest.mark.parametrize("command", sorted(PROCESS_COMMANDS))
def test_processes_keep_log_level_and_format_from_the_settings(command):
    settings = load_settings({"FLEXSYNC_ENV": "development", "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"})
    assert logging_settings(settings, command, 0) == settings
    assert logging_settings(settings, command, 2) == settings


def _park_dead_letter(broker) -> str:
    """One dead letter, parked with the workers' own header convention."""
    synced = BY_RESOURCE["invoices"]
    connection_id = str(uuid.uuid4())
    event_id = str(uuid.uuid4())
    body = {"eventId": event_id, "connectionId": connection_id, "resource": "invoices", "key": "7"}
    target = destination(
        Failure("mapping_error", ValueError("cannot map invoices 7"), transient=False),
        queue=work_queue_name(synced.module),
        routing_key=synced.routing_key("update"),
        headers=None,
    )
    broker.publish(
        "", DEAD_LETTER_QUEUE_NAME, json.dumps(body).encode(), headers=target.headers, message_id=event_id
    )
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 1, message="the parked dead letter")
    return connection_id


def _flexsync(
    args: list[str], amqp_url: str, tmp_path: Path, answer: str
) -> subprocess.CompletedProcess[str]:
    # A process's log settings, as the Procfile's would have them: the tool must not follow them.
    env = {
        "PATH": "/usr/bin:/bin",
        "FLEXSYNC_ENV": "development",
        "AMQP_URL": amqp_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'flexsync.db'}",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        input=answer,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # as a terminal shows them: one stream
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.broker
def test_the_purge_prompt_is_not_interleaved_with_log_lines(amqp_url, broker, tmp_path):
    connection_id = _park_dead_letter(broker)
    result = _flexsync(["purge", "--connection", connection_id], amqp_url, tmp_path, answer="n\n")
    assert "Delete 1 dead letters for good? [y/N]" in result.stdout, result.stdout
    assert _json_lines(result.stdout) == []
    assert "publisher_ready" not in result.stdout
    # Declined: nothing was deleted. The letter was moved from the queue into the table (as every
    # dead-letter command does first) and is still there, not purged.
    engine = create_engine_for(f"sqlite:///{tmp_path / 'flexsync.db'}")
    try:
        stored = DeadLetterStore(engine).count(LetterQuery(connection=connection_id))
        purged = DeadLetterStore(engine).count(LetterQuery(connection=connection_id, state="purged"))
    finally:
        engine.dispose()
    assert broker.depth(DEAD_LETTER_QUEUE_NAME) + stored == 1 and purged == 0


@pytest.mark.broker
def test_verbose_shows_info_lines_in_console_format(amqp_url, broker, tmp_path):
    connection_id = _park_dead_letter(broker)
    result = _flexsync(["-v", "purge", "--connection", connection_id], amqp_url, tmp_path, answer="y\n")
    assert result.returncode == 0, result.stdout
    assert "publisher_ready" in result.stdout
    assert _json_lines(result.stdout) == []
    assert "removed 1" in result.stdout
    wait_until(lambda: broker.depth(DEAD_LETTER_QUEUE_NAME) == 0, message="the purged dead letter gone")


def test_the_command_is_named_however_it_is_invoked():
    seen: list[str | None] = []
    probe = click.Command("list", callback=lambda: seen.append(command_name(click.get_current_context())))
    root = click.Group(
        "flexsync", commands={"connections": click.Group("connections", commands={"list": probe})}
    )
    root(["connections", "list"], standalone_mode=False)
    assert seen == ["connections"]
    # Invoked on its own, as `python -c "...provisioning(obj={})"` does: info_name is then "-c".
    with click.Context(provisioning, info_name="-c") as ctx:
        assert command_name(ctx) == "provisioning"
