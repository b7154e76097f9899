"""``flexsync sandbox``: both simulators in one process; ``intacct``/``flexpoint`` to drive each.

The same group runs as ``flexsync-sandbox`` or ``python -m sandbox`` when only the sandbox's
distribution (flexsync-sandbox) is installed; ``flexsync sandbox`` mounts it from the service's CLI.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from sandbox.flexpoint.cli import flexpoint
from sandbox.flexpoint.config import FlexPointConfig
from sandbox.flexpoint.server import FlexPointServer
from sandbox.intacct.cli import intacct
from sandbox.intacct.config import SimulatorConfig
from sandbox.intacct.server import SimulatorServer
from sandbox.logs import show_info_on_stderr


@click.group(invoke_without_command=True)
@click.option(
    "--intacct-port", type=int, envvar="SANDBOX_INTACCT_PORT", default=SimulatorConfig.port, show_default=True
)
@click.option(
    "--flexpoint-port",
    type=int,
    envvar="SANDBOX_FLEXPOINT_PORT",
    default=FlexPointConfig.port,
    show_default=True,
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/sandbox"),
    show_default=True,
    help="where both keep their data across restarts",
)
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="multiplies Intacct's webhook retry delays (10 s, 30 s, 90 s)",
)
@click.pass_context
def sandbox(
    ctx: click.Context, intacct_port: int, flexpoint_port: int, data_dir: Path, time_scale: float
) -> None:
    """Run the Sage Intacct and FlexPoint simulators until Ctrl-C (or drive one: see commands)."""
    if ctx.invoked_subcommand is not None:
        return
    show_info_on_stderr()
    intacct_server = SimulatorServer(
        SimulatorConfig(port=intacct_port, data_dir=data_dir, time_scale=time_scale)
    ).start()
    flexpoint_server = FlexPointServer(FlexPointConfig(port=flexpoint_port, data_dir=data_dir)).start()
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    click.echo(
        "sandbox running; point the service at it with:\n"
        f"  INTACCT_API_URL={intacct_server.api_url}\n"
        f"  INTACCT_WEBHOOK_JWKS_URL={intacct_server.jwks_url}\n"
        f"  INTACCT_WEBHOOK_ISSUER={intacct_server.config.issuer}\n"
        f"  FLEXPOINT_API_URL={flexpoint_server.url}\n"
        f"  (client secret and API token: the sandbox defaults in sandbox.env)\n"
        f"  data in {data_dir}/; inspect with `flexsync sandbox intacct --help` and "
        "`flexsync sandbox flexpoint --help`"
    )
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        flexpoint_server.stop()
        intacct_server.stop()
        click.echo("sandbox stopped")


sandbox.add_command(intacct)
sandbox.add_command(flexpoint)


def main() -> None:
    """The ``flexsync-sandbox`` console script."""
    sandbox(prog_name="flexsync-sandbox")
