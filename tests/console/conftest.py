"""A console app on a fresh SQLite database, and a signed-in client for it."""

from __future__ import annotations

import re

import pytest

from config import Settings
from console.app import create_app
from processes.console import build as build_parts

TOKEN = "console-test-token-0123456789"


@pytest.fixture
def console_settings(tmp_path) -> Settings:
    return Settings(
        flexsync_env="test",
        amqp_url="amqp://guest:guest@127.0.0.1:1/%2F",  # the pages below need no broker
        database_url=f"sqlite:///{tmp_path}/console.db",
        flexsync_secret_key=("x7rJ0mQyB0V9pC4Q2m0l3n8f1kq6YxT5k3sR4bF1dWg=",),
        flexsync_console_token=TOKEN,
    )


@pytest.fixture
def console(console_settings):
    parts = build_parts(console_settings)
    app = create_app(console_settings, parts=parts)
    yield app
    parts.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, token: str = TOKEN, name: str = "dana"):
    page = client.get("/login")
    return client.post("/login", data={"token": token, "name": name, "csrf_token": csrf_of(page.text)})


@pytest.fixture
def signed_in(console):
    client = console.test_client()
    assert sign_in(client).status_code == 302
    return client
