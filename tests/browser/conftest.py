"""Headless Chromium (Debian's, through Playwright) and a live console on a port of its own."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from kombu import Connection
from werkzeug.serving import make_server

from broker.topology import build_topology, declare_topology
from console.app import create_app
from processes.console import build as build_parts
from workers.deadletters.storer import StoringConsumer
from workers.runtime.process import InBackground

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
TOKEN = "browser-test-console-token-42"


@pytest.fixture(scope="module")
def amqp_url(broker_base_url: str):
    """A vhost of this module's own: its live receiver archives real events, and the archive
    tests elsewhere expect a stream holding only theirs within their time range."""
    from tests.conftest import own_vhost

    with own_vhost(broker_base_url, "flexsync-browser") as url:
        yield url


@pytest.fixture(scope="module")
def declared_topology(amqp_url: str):
    topology = build_topology("7D")
    with Connection(amqp_url) as connection:
        declare_topology(connection, topology)
    return topology


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("no /usr/bin/chromium: run tests/browser/install.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def serve(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture
def live_console(live_receiver):
    """The console on its own port, over the receiver's database, with dead letters stored as they
    come by the storing consumer the ``provisioning`` process runs."""
    settings = live_receiver.parts.settings.with_overrides(flexsync_console_token=TOKEN)
    parts = build_parts(settings, sample_every=1.0)
    storer = InBackground(StoringConsumer.for_url(settings.amqp_url, parts.dead), "dead-letter-storer")
    storer.start()
    app = create_app(settings, parts=parts, background=True)
    url, server = serve(app)
    yield url, parts
    server.shutdown()
    storer.close()
    parts.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
