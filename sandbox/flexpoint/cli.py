"""``flexsync sandbox flexpoint ...``: run the FlexPoint simulator and look inside a running one.

``serve`` runs it; the other commands talk to a running simulator over its admin API at
``--url`` (``FLEXPOINT_API_URL``) with ``--token`` (``FLEXPOINT_API_TOKEN``), the same two
settings the service's workers use, so pointing both at the sandbox is one environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sandbox.flexpoint.admin_client import call_admin, client_options, echo_json
from sandbox.flexpoint.payments_cli import pay_command, postings_command


@click.group("flexpoint")
def flexpoint() -> None:
    """The FlexPoint Sync API simulator (contract: flexpoint-sync-api.yaml)."""


@flexpoint.command("serve")
@click.option("--host", envvar="FLEXPOINT_SANDBOX_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    envvar="FLEXPOINT_SANDBOX_PORT",
    type=click.IntRange(0, 65535),
    default=8090,
    show_default=True,
    help="0 picks a free port",
)
@click.option(
    "--data-dir",
    envvar="FLEXPOINT_SANDBOX_DATA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("var/sandbox"),
    show_default=True,
    help="holds flexpoint.db",
)
@click.option(
    "--token",
    envvar="FLEXPOINT_API_TOKEN",
    default="sandbox-token",
    show_default=True,
    help="the bearer token clients must send (FLEXPOINT_API_TOKEN)",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="delay added to every Sync API request",
)
@click.option(
    "--server-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="share of Sync API requests answered 500/503",
)
@click.option(
    "--rate-limit-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="share answered 429 with Retry-After",
)
@click.option(
    "--retry-after", type=click.IntRange(0), default=1, show_default=True, help="Retry-After seconds on 429"
)
@click.option("--seed", type=int, default=None, help="seed the fault RNG (deterministic faults)")
@click.option(
    "--strict-accounts",
    is_flag=True,
    help="answer 404 to writes for accounts not created via /sandbox/accounts (default: created on first write)",
)
def serve_command(
    host: str,
    port: int,
    data_dir: Path,
    token: str,
    latency_ms: int,
    server_error_rate: float,
    rate_limit_rate: float,
    retry_after: int,
    seed: int | None,
    strict_accounts: bool,
) -> None:
    """Run the simulator until SIGTERM/SIGINT (data kept in DATA_DIR across restarts)."""
    from sandbox.flexpoint.config import FlexPointConfig
    from sandbox.flexpoint.server import serve
    from sandbox.logs import show_info_on_stderr

    show_info_on_stderr()

    try:
        config = FlexPointConfig(
            host=host,
            port=port,
            data_dir=data_dir,
            token=token,
            latency_ms=latency_ms,
            server_error_rate=server_error_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after_seconds=retry_after,
            seed=seed,
            auto_create_accounts=not strict_accounts,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    serve(
        config,
        on_ready=lambda url: click.echo(
            f"FlexPoint sandbox listening on {url} (data: {config.db_path}); Ctrl-C stops it", err=True
        ),
    )


@flexpoint.command("summary")
@client_options
def summary_command(url: str, token: str) -> None:
    """Records per account and resource (live and tombstones), request and fault counters."""
    echo_json(call_admin("GET", url, token, "/sandbox/summary"))


@flexpoint.command("requests")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--account", default=None, help="only this FlexPoint account")
@click.option("--json", "as_json", is_flag=True, help="print the entries as JSON")
@client_options
def requests_command(limit: int, account: str | None, as_json: bool, url: str, token: str) -> None:
    """The last Sync API requests, newest first, with the reason of any refusal."""
    params: dict[str, Any] = {"limit": limit}
    if account:
        params["accountId"] = account
    entries = call_admin("GET", url, token, "/sandbox/requests", params=params)["requests"]
    if as_json:
        echo_json(entries)
        return
    for entry in entries:
        line = f"{entry['at']} {entry['status']} {entry['method']} {entry['path']}"
        if entry.get("idempotencyKey"):
            line += f" key={entry['idempotencyKey']}"
        if entry.get("outcomes"):
            line += " " + ",".join(f"{k}={v}" for k, v in sorted(entry["outcomes"].items()))
        if entry.get("error"):
            line += f" — {entry['error']['message']}"
        click.echo(line)


@flexpoint.command("faults")
@click.option("--latency-ms", type=click.IntRange(0), default=None)
@click.option("--server-error-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--rate-limit-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--retry-after", type=click.IntRange(0), default=None)
@click.option("--seed", type=int, default=None, help="restart the fault sequence from this seed")
@click.option(
    "--fail-next", default=None, help="comma-separated statuses for the next requests, e.g. 503,429"
)
@client_options
def faults_command(
    latency_ms: int | None,
    server_error_rate: float | None,
    rate_limit_rate: float | None,
    retry_after: int | None,
    seed: int | None,
    fail_next: str | None,
    url: str,
    token: str,
) -> None:
    """Show the fault settings, or change those given (the others keep their value)."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("latencyMs", latency_ms),
            ("serverErrorRate", server_error_rate),
            ("rateLimitRate", rate_limit_rate),
            ("retryAfterSeconds", retry_after),
            ("seed", seed),
        )
        if value is not None
    }
    if fail_next is not None:
        try:
            changes["script"] = [int(part) for part in fail_next.split(",") if part.strip()]
        except ValueError:
            raise click.BadParameter(
                "statuses must be numbers, e.g. 503,429", param_hint="--fail-next"
            ) from None
    if changes:
        echo_json(call_admin("PUT", url, token, "/sandbox/faults", json=changes))
    else:
        echo_json(call_admin("GET", url, token, "/sandbox/faults"))


@flexpoint.command("reset")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@client_options
def reset_command(yes: bool, url: str, token: str) -> None:
    """Wipe every record, tombstone, key and status the simulator holds."""
    if not yes:
        click.confirm(f"Wipe all data of the FlexPoint sandbox at {url}?", abort=True)
    call_admin("POST", url, token, "/sandbox/reset")
    click.echo("FlexPoint sandbox wiped")


@flexpoint.command("records")
@click.argument("account")
@click.argument("resource")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--include-deleted", is_flag=True)
@client_options
def records_command(
    account: str, resource: str, limit: int, include_deleted: bool, url: str, token: str
) -> None:
    """The first records of one resource in one account (the Sync API's list)."""
    page = call_admin(
        "GET",
        url,
        token,
        f"/v1/accounts/{account}/accounting/{resource}",
        params={"limit": limit, "includeDeleted": str(include_deleted).lower()},
    )
    echo_json(page)


@flexpoint.command("status")
@click.argument("account")
@client_options
def status_command(account: str, url: str, token: str) -> None:
    """The last Sage Intacct connection status reported for an account."""
    echo_json(call_admin("GET", url, token, f"/v1/accounts/{account}/integrations/sage-intacct"))


flexpoint.add_command(pay_command)
flexpoint.add_command(postings_command)
