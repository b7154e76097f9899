"""How the ``flexsync sandbox flexpoint`` commands reach a running simulator: URL and token options,
one call that turns an error answer into one readable line, JSON output."""

from __future__ import annotations

import json
from typing import Any

import click

DEFAULT_URL = "http://127.0.0.1:8090"


def client_options(command: Any) -> Any:
    command = click.option(
        "--token",
        envvar="FLEXPOINT_API_TOKEN",
        default="sandbox-token",
        show_default=True,
        help="bearer token (FLEXPOINT_API_TOKEN)",
    )(command)
    return click.option(
        "--url",
        envvar="FLEXPOINT_API_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="the simulator's base URL (FLEXPOINT_API_URL)",
    )(command)


def call_admin(method: str, url: str, token: str, path: str, **kwargs: Any) -> Any:
    import requests

    try:
        response = requests.request(
            method, url.rstrip("/") + path, timeout=30, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
    except requests.ConnectionError:
        raise click.ClickException(
            f"no FlexPoint sandbox answers at {url} (start it: flexsync sandbox flexpoint serve)"
        ) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise click.ClickException(f"{method} {path}: {response.status_code} {message}")
    return response.json() if response.content else None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
