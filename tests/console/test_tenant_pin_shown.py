"""The tenant a connection pinned is shown by `flexsync connections list` and the console."""

from __future__ import annotations

import re

from click.testing import CliRunner

from cli.main import main
from processes.parts import ProcessParts


def _connect(store, connection_id: str, account_id: str):
    return store.save(connection_id, account_id, "ACME-CO", None, "ws", "connected")


def test_connections_list_and_the_console_show_the_pinned_tenant(signed_in, console_settings):
    parts = ProcessParts(console_settings, process="test")
    store = parts.connections
    _connect(store, "conn-pinned", "acct-1")
    _connect(store, "conn-unpinned", "acct-2")
    store.pin_tenant("conn-pinned", "tenant-7f3a")

    result = CliRunner().invoke(main, ["connections", "list"], obj={"settings": console_settings})
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "tenant=tenant-7f3a" in lines["conn-pinned"]
    assert "tenant=-" in lines["conn-unpinned"]

    page = signed_in.get("/connections").text
    rows = {
        match.group(1): match.group(0)
        for match in re.finditer(r'<tr data-connection="([^"]+)">.*?</tr>', page, re.S)
    }
    assert "tenant tenant-7f3a" in rows["conn-pinned"]
    assert "tenant not pinned yet" in rows["conn-unpinned"]
