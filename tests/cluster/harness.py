"""A RabbitMQ cluster of several nodes on this machine, started and stopped by the test that needs it.

Each node is its own Erlang VM with a distinct node name (``flexsync-cN@localhost``), AMQP port,
distribution port, configuration file and data directory under ``base``; they share the system's
Erlang cookie (copied into ``base``) so that ``rabbitmqctl`` and ``join_cluster`` can reach them.
The machine's own node (``rabbit@localhost`` on 5672) is never touched.

Run by hand: ``python -m tests.cluster.harness up`` starts three nodes and prints their AMQP_URL;
``python -m tests.cluster.harness down`` stops them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
SYSTEM_COOKIE = Path("/var/lib/rabbitmq/.erlang.cookie")
DEFAULT_BASE = Path("var/rabbitmq-cluster")


class ClusterError(RuntimeError):
    """A node did not start, join or stop as asked; the message says which and why."""


@dataclass(frozen=True)
class Node:
    """One node of the cluster: its Erlang name, its AMQP port and its own directory."""

    index: int
    amqp_port: int
    dist_port: int
    directory: Path

    @property
    def name(self) -> str:
        return f"flexsync-c{self.index}@localhost"

    def url(self, vhost: str = "%2F") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{vhost}"


def available() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    for path in (SERVER, CTL):
        if not path.exists():
            return f"{path} is missing (Debian's rabbitmq-server package provides it)"
    if not SYSTEM_COOKIE.exists():
        return f"no Erlang cookie at {SYSTEM_COOKIE}"
    return None


class RabbitCluster:
    """Starts ``size`` nodes, clusters them, and stops, restarts or inspects them on request."""

    def __init__(self, base: Path = DEFAULT_BASE, *, size: int = 3, first_port: int = 5701) -> None:
        self.base = base.resolve()
        self.nodes = [
            Node(i, first_port + i - 1, first_port + 20000 + i - 1, self.base / f"node{i}")
            for i in range(1, size + 1)
        ]

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Start every node from empty data directories and join them to the first."""
        problem = available()
        if problem:
            raise ClusterError(problem)
        self.stop(quiet=True)
        shutil.rmtree(self.base, ignore_errors=True)
        home = self.base / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        shutil.copyfile(SYSTEM_COOKIE, cookie)
        cookie.chmod(0o400)
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            self._wait_running(node, timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        self._wait_members(timeout)

    def stop(self, *, quiet: bool = False) -> None:
        """Stop every node that runs (each ``rabbitmqctl stop`` waits for the VM to exit)."""
        for node in self.nodes:
            try:
                self.stop_node(node)
            except ClusterError:
                if not quiet:
                    raise

    def stop_node(self, node: Node, timeout: float = 60.0) -> None:
        """Stop one node's VM entirely (the way a lost machine looks to the others)."""
        if not (self.base / "home").exists():
            return
        pid_file = node.directory / "pid"
        # With a pid file, `stop` also waits for that VM to exit; without one (the node never
        # started, or stopped already) it would wait for the file forever, so it is left out.
        wait_for = [str(pid_file)] if pid_file.exists() else []
        result = self._run([str(CTL), "-q", "-n", node.name, "stop", *wait_for], timeout=timeout)
        if result.returncode not in (0, 69):  # 69: the node was not running
            raise ClusterError(f"{node.name} did not stop: {result.stderr.strip()[:300]}")

    def restart_node(self, node: Node, timeout: float = 90.0) -> None:
        """Start a stopped node again on its own data; it rejoins the cluster by itself."""
        self._launch(node)
        self._wait_running(node, timeout)

    def __enter__(self) -> RabbitCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(quiet=True)

    # -- inspection ----------------------------------------------------------------------------

    def amqp_url(self, vhost: str = "%2F") -> str:
        """The comma-separated AMQP_URL naming every node (the brief's cluster form)."""
        return ",".join(node.url(vhost) for node in self.nodes)

    def node_named(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"{name} is not a node of this cluster")

    def leader_of(self, queue: str, vhost: str = "/", via: Node | None = None) -> Node:
        """The node that leads the quorum queue ``queue`` right now."""
        rows = self.list_queues(vhost, via=via)
        for row in rows:
            if row.get("name") == queue and row.get("leader"):
                return self.node_named(str(row["leader"]))
        raise ClusterError(f"no leader known for {queue!r} in vhost {vhost!r}")

    def list_queues(self, vhost: str = "/", via: Node | None = None) -> list[dict]:
        node = via or self._a_running_node()
        out = self.ctl(
            node, "list_queues", "-p", vhost, "name", "type", "leader", "messages", "--formatter", "json"
        )
        return json.loads(out or "[]")

    def running(self, node: Node) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", node.amqp_port), timeout=1):
                return True
        except OSError:
            return False

    def ctl(self, node: Node, *args: str, timeout: float = 60.0) -> str:
        result = self._run([str(CTL), "-q", "-n", node.name, *args], timeout=timeout)
        if result.returncode != 0:
            raise ClusterError(f"rabbitmqctl {' '.join(args)} on {node.name}: {result.stderr.strip()[:300]}")
        return result.stdout

    # -- internals -----------------------------------------------------------------------------

    def _launch(self, node: Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        config = node.directory / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.local = 127.0.0.1:{node.amqp_port}\n"
            "loopback_users = none\n"
            # A lost node is noticed within seconds, not the default minute.
            "net_ticktime = 10\n"
        )
        plugins = node.directory / "enabled_plugins"
        plugins.write_text("[].\n")
        env = {
            **self._env(),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PID_FILE": str(node.directory / "pid"),
        }
        result = subprocess.run(
            [str(SERVER), "-detached"],
            cwd=node.directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise ClusterError(f"{node.name} did not start: {result.stderr.strip()[:300]}")

    def _wait_running(self, node: Node, timeout: float) -> None:
        pid_file = node.directory / "pid"
        result = self._run(
            [str(CTL), "-q", "-n", node.name, "wait", str(pid_file), "--timeout", str(int(timeout))],
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            raise ClusterError(
                f"{node.name} did not come up within {timeout:.0f} s: {result.stderr.strip()[:300]}"
            )
        _poll(
            lambda: self.running(node), timeout, f"{node.name} runs but port {node.amqp_port} does not answer"
        )

    def _wait_members(self, timeout: float) -> None:
        wanted = {node.name for node in self.nodes}

        def joined() -> bool:
            out = self.ctl(self.nodes[0], "cluster_status", "--formatter", "json")
            return set(json.loads(out).get("running_nodes", [])) >= wanted

        _poll(joined, timeout, f"the nodes did not all join within {timeout:.0f} s")

    def _a_running_node(self) -> Node:
        for node in self.nodes:
            if self.running(node):
                return node
        raise ClusterError("no node of the cluster is running")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env["HOME"] = str(self.base / "home")
        return env

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
        )


def _poll(condition: Callable[[], bool], timeout: float, failure: str) -> None:
    """Until ``condition()`` holds, or ClusterError(``failure``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterError(failure)
        threading.Event().wait(0.2)


def main(argv: list[str]) -> int:
    cluster = RabbitCluster()
    if argv[:1] == ["up"]:
        cluster.start()
        print(cluster.amqp_url())
        return 0
    if argv[:1] == ["down"]:
        cluster.stop(quiet=True)
        return 0
    print("usage: python -m tests.cluster.harness up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
