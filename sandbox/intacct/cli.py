"""``flexsync sandbox intacct ...``: run the simulator, seed it, and drive its admin API.

Also runnable alone: ``python -m sandbox.intacct.cli serve``.

``serve`` and ``seed`` work on the data dir directly; every other command talks to a running
simulator's admin API (``--url``), so mutations fire webhooks from the process that owns them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import requests

from .config import DEFAULT_CLIENT_SECRET, DEFAULT_ISSUER, SimulatorConfig
from .objects import AREAS, OBJECT_TYPES
from .payments_cli import payments

_DEFAULT_URL = "http://127.0.0.1:8091"
_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="var/sandbox",
    show_default=True,
    envvar="FLEXSYNC_SANDBOX_DATA_DIR",
    help="where intacct.db and the key live",
)


class _Admin:
    """A thin client of the admin API that turns error bodies into one readable line."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        """Call the admin API; a 4xx/5xx or no server becomes a one-line ClickException."""
        try:
            response = self.session.request(
                method,
                f"{self.url}/sandbox{path}",
                json=body,
                timeout=600,
                params={k: v for k, v in params.items() if v is not None},
            )
        except requests.ConnectionError:
            raise click.ClickException(
                f"no simulator answers at {self.url} (start it with `serve`)"
            ) from None
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"message": response.text[:200]}}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise click.ClickException(f"HTTP {response.status_code}: {error.get('message', payload)}")
        return payload


def _echo(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2))


def _admin(ctx: click.Context) -> _Admin:
    return ctx.find_object(_Admin)


def _object_path(value: str) -> str:
    if value.strip("/") not in OBJECT_TYPES:
        raise click.BadParameter(f"one of {', '.join(OBJECT_TYPES)}")
    return value.strip("/")


def _json_argument(value: str) -> dict[str, Any]:
    """JSON given inline, as @file, or as '-' for stdin."""
    text = (
        sys.stdin.read() if value == "-" else Path(value[1:]).read_text() if value.startswith("@") else value
    )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object")
    return data


@click.group()
@click.option(
    "--url",
    default=_DEFAULT_URL,
    show_default=True,
    envvar="FLEXSYNC_SANDBOX_INTACCT_URL",
    help="a running simulator (for the admin commands)",
)
@click.option(
    "--admin-token",
    envvar="FLEXSYNC_SANDBOX_INTACCT_ADMIN_TOKEN",
    default=None,
    help="the simulator's admin token, if it was started with one",
)
@click.pass_context
def intacct(ctx: click.Context, url: str, admin_token: str | None) -> None:
    """The Sage Intacct simulator."""
    ctx.obj = _Admin(url, admin_token)


# -- serve & seed -------------------------------------------------------------------------------


@intacct.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8091, show_default=True)
@_DATA_DIR
@click.option("--client-id", default=SimulatorConfig.client_id, show_default=True, envvar="INTACCT_CLIENT_ID")
@click.option(
    "--client-secret",
    default=DEFAULT_CLIENT_SECRET,
    envvar="INTACCT_CLIENT_SECRET",
    help="FlexPoint's client secret the token endpoint accepts",
)
@click.option("--token-ttl", type=int, default=43_200, show_default=True, help="access token lifetime (s)")
@click.option("--issuer", default=DEFAULT_ISSUER, show_default=True, help="iss of webhook JWTs")
@click.option(
    "--concurrency-cap", type=int, default=2, show_default=True, help="concurrent requests per company"
)
@click.option(
    "--time-scale", type=float, default=1.0, show_default=True, help="multiplies webhook retry delays"
)
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--error-rate", type=float, default=0.0, show_default=True, help="share of calls answered 5xx")
@click.option("--error-status", type=int, default=503, show_default=True)
@click.option(
    "--timeout-rate", type=float, default=0.0, show_default=True, help="share of calls held, then 504"
)
@click.option(
    "--timeout-hold", type=float, default=30.0, show_default=True, help="seconds a timeout holds a call"
)
@click.option("--fault-seed", type=int, default=None, help="seed the fault RNG for a repeatable run")
@click.option(
    "--webhook-scheme",
    type=click.Choice(["sage-signature", "bearer-jwks", "any"], case_sensitive=False),
    default="sage-signature",
    show_default=True,
    envvar="INTACCT_WEBHOOK_SCHEME",
    help="how webhooks are signed (the service's setting; any signs as sage-signature)",
)
@click.option(
    "--sage-signature-form",
    type=click.Choice(["alternate", "bare", "envelope"]),
    default="alternate",
    show_default=True,
    help="X-IA-Sage-Signature as the bare JWT, base64 JSON with jwtData, or each in turn",
)
@click.option(
    "--admin-token",
    "serve_admin_token",
    envvar="FLEXSYNC_SANDBOX_INTACCT_ADMIN_TOKEN",
    default=None,
    help="require this bearer token on /sandbox/*",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    client_id: str,
    client_secret: str,
    token_ttl: int,
    issuer: str,
    concurrency_cap: int,
    time_scale: float,
    latency_ms: float,
    error_rate: float,
    error_status: int,
    timeout_rate: float,
    timeout_hold: float,
    fault_seed: int | None,
    webhook_scheme: str,
    sage_signature_form: str,
    serve_admin_token: str | None,
) -> None:
    """Run the simulator until SIGTERM/SIGINT."""
    from sandbox.logs import show_info_on_stderr

    from .server import serve as run

    show_info_on_stderr()

    try:
        config = SimulatorConfig(
            host=host,
            port=port,
            data_dir=data_dir,
            client_id=client_id,
            client_secret=client_secret,
            token_ttl_seconds=token_ttl,
            issuer=issuer,
            concurrency_cap=concurrency_cap,
            time_scale=time_scale,
            latency_ms=latency_ms,
            error_rate=error_rate,
            error_status=error_status,
            timeout_rate=timeout_rate,
            timeout_hold_seconds=timeout_hold,
            fault_seed=fault_seed,
            webhook_scheme="sage-signature" if webhook_scheme.lower() == "any" else webhook_scheme.lower(),
            sage_signature_form=sage_signature_form,
            admin_token=serve_admin_token,
        )
        from .simulator import fault_settings

        fault_settings(config)  # validates the rates before the server starts
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    run(config, announce=click.echo)


@intacct.command()
@click.argument("company")
@_DATA_DIR
@click.option(
    "--via-api", is_flag=True, help="seed through the running simulator (--url) instead of the data dir"
)
@click.option("--customers", type=int, default=50, show_default=True)
@click.option("--invoices", type=int, default=200, show_default=True)
@click.option("--lines-per-invoice", type=int, default=None, help="default: 1-5 at random")
@click.option("--adjustments", type=int, default=None, help="default: invoices / 20")
@click.option("--journal-entries", type=int, default=None, help="default: invoices / 10")
@click.option("--other-receipts", type=int, default=None, help="default: invoices / 50")
@click.option("--checking-accounts", type=int, default=3, show_default=True)
@click.option("--entities", type=int, default=2, show_default=True)
@click.option(
    "--seed", "seed_value", type=int, default=1, show_default=True, help="RNG seed (same seed, same data)"
)
@click.option("--as-of", type=int, default=None, help="unix time the data is as of (default now)")
@click.pass_context
def seed(
    ctx: click.Context, company: str, data_dir: Path, via_api: bool, seed_value: int, **counts: Any
) -> None:
    """Create realistic data for COMPANY (created if new): customers, invoices with lines, payments, ..."""
    from .seed import SeedOptions, seed_company
    from .store import Store

    try:
        options = SeedOptions(seed=seed_value, **counts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if via_api:
        _echo(_admin(ctx).call("POST", f"/companies/{company}/seed", options.to_json()))
        return
    store = Store(SimulatorConfig(data_dir=data_dir).database_path)
    try:
        _echo(seed_company(store, company, options))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


# -- companies ----------------------------------------------------------------------------------


def _company_settings(
    users: tuple[str, ...],
    entities: tuple[str, ...],
    sender: bool | None,
    webhook_url: str | None,
    webhook_objects: str | None,
    webhooks: bool | None,
    concurrency_cap: int | None,
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if users:
        parsed = []
        for spec in users:
            user_id, _, areas = spec.partition(":")
            parsed.append(
                {"userId": user_id, "areas": [a for a in areas.split(",") if a] if areas else list(AREAS)}
            )
        settings["users"] = parsed
    if entities:
        settings["entities"] = [{"id": e} for e in entities]
    if sender is not None:
        settings["senderAuthorized"] = sender
    hooks: dict[str, Any] = {}
    if webhook_url is not None:
        hooks["url"] = webhook_url or None
    if webhook_objects is not None:
        hooks["objects"] = [o.strip() for o in webhook_objects.split(",") if o.strip()]
    if webhooks is not None:
        hooks["enabled"] = webhooks
    if hooks:
        settings["webhooks"] = hooks
    if concurrency_cap is not None:
        settings["concurrencyCap"] = concurrency_cap
    return settings


def _company_options(function):
    options = [
        click.option(
            "--user",
            "users",
            multiple=True,
            help=f"USER or USER:area,area (areas: {', '.join(AREAS)}); repeatable; replaces the users",
        ),
        click.option(
            "--sender-authorized/--sender-not-authorized",
            "sender",
            default=None,
            help="whether the company authorized FlexPoint's sender",
        ),
        click.option("--webhook-url", default=None, help="trigger URL ({companyId}, {object} are filled in)"),
        click.option("--webhook-objects", default=None, help="comma-separated Intacct objects (default all)"),
        click.option("--webhooks/--no-webhooks", "webhooks", default=None, help="triggers on or off"),
        click.option("--concurrency-cap", type=int, default=None, help="this company's own cap"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@intacct.group()
def companies() -> None:
    """Simulated companies and their setup."""


@companies.command("list")
@click.pass_context
def companies_list(ctx: click.Context) -> None:
    """Every company's settings."""
    _echo(_admin(ctx).call("GET", "/companies"))


@companies.command("create")
@click.argument("company")
@_company_options
@click.option("--entity", "entities", multiple=True, help="an entity ID to create; repeatable")
@click.pass_context
def companies_create(
    ctx: click.Context,
    company: str,
    users,
    sender,
    webhook_url,
    webhook_objects,
    webhooks,
    concurrency_cap,
    entities,
) -> None:
    """Create COMPANY (default: user ws_flexpoint with every area, sender authorized)."""
    settings = _company_settings(
        users, entities, sender, webhook_url, webhook_objects, webhooks, concurrency_cap
    )
    _echo(_admin(ctx).call("POST", "/companies", {"companyId": company, **settings}))


@companies.command("update")
@click.argument("company")
@_company_options
@click.pass_context
def companies_update(
    ctx: click.Context, company: str, users, sender, webhook_url, webhook_objects, webhooks, concurrency_cap
) -> None:
    """Change some of COMPANY's settings (e.g. --sender-not-authorized, --user ws:company,accounts-receivable)."""
    settings = _company_settings(users, (), sender, webhook_url, webhook_objects, webhooks, concurrency_cap)
    _echo(_admin(ctx).call("PATCH", f"/companies/{company}", settings))


@companies.command("show")
@click.argument("company")
@click.pass_context
def companies_show(ctx: click.Context, company: str) -> None:
    """COMPANY's settings and record counts."""
    _echo(_admin(ctx).call("GET", f"/companies/{company}"))


@companies.command("delete")
@click.argument("company")
@click.option("--yes", is_flag=True, help="do not ask")
@click.pass_context
def companies_delete(ctx: click.Context, company: str, yes: bool) -> None:
    """Delete COMPANY and all its records."""
    if not yes:
        click.confirm(f"Delete {company} and all its records?", abort=True)
    _admin(ctx).call("DELETE", f"/companies/{company}")
    click.echo(f"deleted {company}")


# -- webhooks -----------------------------------------------------------------------------------


@intacct.group()
def webhooks() -> None:
    """A company's triggers and the delivery log."""


@webhooks.command("on")
@click.argument("company")
@click.pass_context
def webhooks_on(ctx: click.Context, company: str) -> None:
    """Deliver COMPANY's webhooks again."""
    _echo(_admin(ctx).call("PATCH", f"/companies/{company}/webhooks", {"enabled": True}))


@webhooks.command("off")
@click.argument("company")
@click.pass_context
def webhooks_off(ctx: click.Context, company: str) -> None:
    """Stop COMPANY's webhooks (simulates lost webhooks)."""
    _echo(_admin(ctx).call("PATCH", f"/companies/{company}/webhooks", {"enabled": False}))


@webhooks.command("set")
@click.argument("company")
@click.argument("url")
@click.option("--objects", default=None, help="comma-separated Intacct objects (default all)")
@click.pass_context
def webhooks_set(ctx: click.Context, company: str, url: str, objects: str | None) -> None:
    """Point COMPANY's triggers at URL (e.g. http://127.0.0.1:8000/webhooks/intacct/<connectionId>)."""
    body: dict[str, Any] = {"url": url, "enabled": True}
    if objects is not None:
        body["objects"] = [o.strip() for o in objects.split(",") if o.strip()]
    _echo(_admin(ctx).call("PATCH", f"/companies/{company}/webhooks", body))


@webhooks.command("log")
@click.option("--company", default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def webhooks_log(ctx: click.Context, company: str | None, limit: int) -> None:
    """Recent delivery attempts (newest last)."""
    _echo(_admin(ctx).call("GET", "/webhooks/deliveries", companyId=company, limit=limit))


# -- records ------------------------------------------------------------------------------------


@intacct.group()
def records() -> None:
    """Create, change, delete and list records (mutations fire the company's triggers)."""


@records.command("list")
@click.argument("company")
@click.argument("object_path", metavar="OBJECT")
@click.option("--start", type=int, default=1, show_default=True)
@click.option("--size", type=int, default=20, show_default=True)
@click.pass_context
def records_list(ctx: click.Context, company: str, object_path: str, start: int, size: int) -> None:
    """Records of OBJECT (e.g. accounts-receivable/invoice), by key."""
    _echo(
        _admin(ctx).call(
            "GET", f"/companies/{company}/objects/{_object_path(object_path)}", start=start, size=size
        )
    )


@records.command("get")
@click.argument("company")
@click.argument("object_path", metavar="OBJECT")
@click.argument("key", type=int)
@click.pass_context
def records_get(ctx: click.Context, company: str, object_path: str, key: int) -> None:
    """One record (with its lines)."""
    _echo(_admin(ctx).call("GET", f"/companies/{company}/objects/{_object_path(object_path)}/{key}"))


@records.command("create")
@click.argument("company")
@click.argument("object_path", metavar="OBJECT")
@click.argument("data")
@click.pass_context
def records_create(ctx: click.Context, company: str, object_path: str, data: str) -> None:
    """Create a record from DATA (JSON, @file or -), e.g. '{"customer": {"id": "C-00001"}, "lines": [...]}'."""
    path = _object_path(object_path)
    _echo(_admin(ctx).call("POST", f"/companies/{company}/objects/{path}", _json_argument(data)))


@records.command("update")
@click.argument("company")
@click.argument("object_path", metavar="OBJECT")
@click.argument("key", type=int)
@click.argument("data")
@click.pass_context
def records_update(ctx: click.Context, company: str, object_path: str, key: int, data: str) -> None:
    """Change fields of a record from DATA (JSON, @file or -)."""
    path = _object_path(object_path)
    _echo(_admin(ctx).call("PATCH", f"/companies/{company}/objects/{path}/{key}", _json_argument(data)))


@records.command("delete")
@click.argument("company")
@click.argument("object_path", metavar="OBJECT")
@click.argument("key", type=int)
@click.pass_context
def records_delete(ctx: click.Context, company: str, object_path: str, key: int) -> None:
    """Delete a record (and its lines)."""
    _admin(ctx).call("DELETE", f"/companies/{company}/objects/{_object_path(object_path)}/{key}")
    click.echo(f"deleted {object_path} {key}")


@intacct.command()
@click.argument("company")
@click.pass_context
def counts(ctx: click.Context, company: str) -> None:
    """Records per object for COMPANY."""
    _echo(_admin(ctx).call("GET", f"/companies/{company}/counts"))


# -- faults, limits, stats ----------------------------------------------------------------------


@intacct.command()
@click.option("--company", default=None)
@click.option("--reset", is_flag=True, help="zero the counters after showing them")
@click.pass_context
def stats(ctx: click.Context, company: str | None, reset: bool) -> None:
    """API calls per company and object, answers per status, requests in flight."""
    _echo(_admin(ctx).call("GET", "/stats", companyId=company))
    if reset:
        _admin(ctx).call("DELETE", "/stats")


@intacct.command("requests")
@click.option("--company", default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def requests_log(ctx: click.Context, company: str | None, limit: int) -> None:
    """Recent API requests (with the entity header each carried)."""
    _echo(_admin(ctx).call("GET", "/requests", companyId=company, limit=limit))


@intacct.command()
@click.option("--latency-ms", type=float, default=None)
@click.option("--error-rate", type=float, default=None)
@click.option("--error-status", type=int, default=None)
@click.option("--timeout-rate", type=float, default=None)
@click.option("--timeout-hold", type=float, default=None, help="seconds")
@click.option(
    "--commit-error-rate",
    type=float,
    default=None,
    help="share of payment writes committed, then answered 500",
)
@click.option(
    "--commit-timeout-rate",
    type=float,
    default=None,
    help="share of payment writes committed, then held past the client's timeout (504)",
)
@click.option(
    "--company", default=None, help="set the commit rates for this company only (with --reset: drop them)"
)
@click.option("--seed", type=int, default=None)
@click.option("--reset", is_flag=True, help="back to the settings the simulator started with")
@click.pass_context
def faults(
    ctx: click.Context,
    latency_ms,
    error_rate,
    error_status,
    timeout_rate,
    timeout_hold,
    commit_error_rate,
    commit_timeout_rate,
    company: str | None,
    seed,
    reset: bool,
) -> None:
    """Show or change injected faults (no option: show)."""
    commit = {"commitErrorRate": commit_error_rate, "commitTimeoutRate": commit_timeout_rate}
    commit = {k: v for k, v in commit.items() if v is not None}
    if company is not None:
        write_faults = None if reset else commit
        if write_faults == {}:
            raise click.UsageError("--company takes --commit-error-rate, --commit-timeout-rate or --reset")
        answer = _admin(ctx).call("PATCH", f"/companies/{company}", {"writeFaults": write_faults})
        _echo({"companyId": company, "writeFaults": answer["writeFaults"]})
        return
    if reset:
        _echo(_admin(ctx).call("DELETE", "/faults"))
        return
    changes = {
        "latencyMs": latency_ms,
        "errorRate": error_rate,
        "errorStatus": error_status,
        "timeoutRate": timeout_rate,
        "timeoutHoldSeconds": timeout_hold,
        "seed": seed,
        **commit,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    _echo(_admin(ctx).call("PATCH", "/faults", changes) if changes else _admin(ctx).call("GET", "/faults"))


@intacct.command()
@click.option("--concurrency-cap", type=int, default=None)
@click.option("--retry-after", type=int, default=None, help="seconds in a 429's Retry-After")
@click.option("--token-ttl", type=int, default=None, help="lifetime of tokens issued from now on")
@click.pass_context
def limits(ctx: click.Context, concurrency_cap, retry_after, token_ttl) -> None:
    """Show or change the global concurrency cap, Retry-After and token lifetime."""
    changes = {
        "concurrencyCap": concurrency_cap,
        "retryAfterSeconds": retry_after,
        "tokenTtlSeconds": token_ttl,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    _echo(_admin(ctx).call("PATCH", "/limits", changes) if changes else _admin(ctx).call("GET", "/limits"))


intacct.add_command(payments)

if __name__ == "__main__":
    intacct()
