"""Issue 30 #8: slow clients must not starve the receiver of its request threads.

200 connections on 127.0.0.1 trickle a byte at a time (half their headers, half a body whose
declared length they never reach) into one ``flexsync web`` process with 2 request threads; signed
webhooks sent meanwhile are each answered within seconds, and the slow connections are answered
408 and closed once their read deadline passed. Bounded: about 20 s.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time

import pytest

from ingest.auth import sign_hmac
from ingest.server import REQUEST_READ_SECONDS, request_complete
from store.crypto import SecretBox
from store.db import create_engine_for, upgrade
from tests.conftest import invoice_event, wait_until
from tests.web_processes import running_receivers
from workers.connections.store import ConnectionStore

CONNECTION = "conn-slow-1"
COMPANY = "SLOW-CO"
SLOW = 200


@pytest.fixture
def secret(settings):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    store = ConnectionStore(engine, SecretBox.for_settings(settings))
    store.save(CONNECTION, "acct-slow", COMPANY, None, "ws_user", "connected")
    yield store.webhook_secret(CONNECTION)
    engine.dispose()


def _post(port: int, secret: str, key: str) -> int:
    body = json.dumps(invoice_event(key=key, companyId=COMPANY)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time())),
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        connection.request("POST", f"/webhooks/intacct/{CONNECTION}", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class Trickle:
    """Open slow connections, each fed one byte every ``interval`` seconds on a thread of its own."""

    def __init__(self, port: int, count: int, interval: float = 0.5) -> None:
        self.sockets: list[socket.socket] = []
        self.closed_by_server: set[int] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._interval = interval
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n % 2:  # a body declared 1,000 bytes long, sent a byte at a time
                sock.sendall(
                    f"POST /webhooks/intacct/{CONNECTION} HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
                )
            else:  # headers that never end
                sock.sendall(f"POST /webhooks/intacct/{CONNECTION} HTTP/1.1\r\nHost: x\r\n".encode())
            self.sockets.append(sock)
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.wait(self._interval):
            for index, sock in enumerate(self.sockets):
                if index in self.closed_by_server:
                    continue
                try:
                    sock.sendall(b" " if index % 2 else b"X")
                except OSError:
                    self.closed_by_server.add(index)
            self.rounds += 1

    def answered_or_closed(self) -> int:
        """How many the server has answered or closed (read without blocking)."""
        done = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                done += 1
                continue
            if data == b"" or data.startswith(b"HTTP/1.1 408"):
                done += 1
        return done

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.broker
def test_webhooks_are_answered_while_200_slow_connections_are_open(settings, secret, tmp_path, broker):
    with running_receivers(settings, tmp_path, 1, threads=2) as (port,):
        trickle = Trickle(port, SLOW)
        try:
            wait_until(lambda: trickle.rounds >= 2, timeout=10, message="the slow connections trickling")
            began = time.monotonic()
            statuses = []
            for n in range(10):
                started = time.monotonic()
                try:
                    statuses.append((_post(port, secret, f"slow-{n}"), round(time.monotonic() - started, 2)))
                except OSError as exc:
                    statuses.append((type(exc).__name__, round(time.monotonic() - started, 2)))
            assert all(status == 202 for status, _ in statuses), statuses
            assert all(seconds < 2.0 for _, seconds in statuses), statuses
            # Nothing trickles forever: past the read deadline each slow one is answered or closed.
            wait_until(
                lambda: trickle.answered_or_closed() == SLOW,
                timeout=REQUEST_READ_SECONDS + 10 - (time.monotonic() - began),
                interval=0.5,
                message="the slow connections timed out by the server",
            )
        finally:
            trickle.close()
        # Read whole before a thread takes them, requests still work as HTTP/1.1 has them.
        _keep_alive_and_continue(port, secret)


def _keep_alive_and_continue(port: int, secret: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for n in range(3):  # one connection, kept alive
            body = json.dumps(invoice_event(key=f"kept-{n}", companyId=COMPANY)).encode()
            headers = {
                "Content-Type": "application/json",
                "X-FlexPoint-Signature": sign_hmac(secret, body, int(time.time())),
            }
            connection.request("POST", f"/webhooks/intacct/{CONNECTION}", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 202
    finally:
        connection.close()
    body = json.dumps(invoice_event(key="continued", companyId=COMPANY)).encode()
    head = (
        f"POST /webhooks/intacct/{CONNECTION} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-FlexPoint-Signature: {sign_hmac(secret, body, int(time.time()))}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue"), "the body is asked for"
        sock.sendall(body)
        answer = b""
        while b"HTTP/1.1 202" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
        assert b"HTTP/1.1 202" in answer, answer[:200]


def test_a_request_is_whole_by_its_length_or_its_last_chunk():
    head = b"POST /w HTTP/1.1\r\nHost: x\r\n"
    assert request_complete(head, 100) is False
    assert request_complete(head + b"\r\n", 100) is True  # no body
    assert request_complete(head + b"Content-Length: 5\r\n\r\nabcd", 100) is False
    assert request_complete(head + b"Content-Length: 5\r\n\r\nabcde", 100) is True
    assert request_complete(head + b"Content-Length: 500\r\n\r\nab", 100) is True, "over the limit: 413"
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"
    assert request_complete(chunked + b"3\r\nabc\r\n", 100) is False
    assert request_complete(chunked + b"3\r\nabc\r\n0\r\n", 100) is False
    assert request_complete(chunked + b"3\r\nabc\r\n0\r\n\r\n", 100) is True
    assert request_complete(chunked + b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", 100) is True
    assert request_complete(chunked + b"zz\r\n", 100) is True, "a bad chunk is the parser's to refuse"
    assert request_complete(head + b"X: " + b"y" * 70_000, 100) is None
