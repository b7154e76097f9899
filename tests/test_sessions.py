"""The clients' HTTP session: the proxy and CA-bundle variables still apply, read once per host."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

import clients.sessions as sessions
from clients.sessions import pooled_session


def test_proxies_and_no_proxy_apply_and_are_read_once_per_host(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    reads: list[str] = []
    real = sessions.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(sessions, "get_environ_proxies", counted)
    session = pooled_session(4)
    for path in ("a", "b", "c"):
        merged = session.merge_environment_settings(f"https://api.example/{path}", {}, None, None, None)
        assert merged["proxies"]["https"] == "http://proxy.example:3128"
    bypassed = session.merge_environment_settings("https://internal.example/x", {}, None, None, None)
    assert "https" not in bypassed["proxies"]
    assert reads == ["https://api.example/a", "https://internal.example/x"]


def test_the_ca_bundle_variable_is_the_default_verify_and_never_a_netrc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    session = pooled_session(4)
    assert session.merge_environment_settings("https://api.example/", {}, None, True, None)["verify"] == (
        "/etc/ssl/bundle.pem"
    )
    # An explicit choice of the caller stands.
    assert (
        session.merge_environment_settings("https://api.example/", {}, None, False, None)["verify"] is False
    )
    assert session.trust_env is False  # no ~/.netrc replacing a call's own Authorization


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        _Recorder.seen.append({**dict(self.headers), "body": body.decode()})
        self.send_response(200)
        if self.path == "/set-cookie":
            self.send_header("Set-Cookie", "flavour=oat; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_sends_what_requests_would_and_runs_the_session_hooks(recorder: str):
    session = pooled_session(4)
    session.headers.update({"User-Agent": "flexsync", "Accept": "application/json"})
    answered: list[int] = []
    session.hooks["response"].append(lambda response, **_: answered.append(response.status_code))
    response = session.request(
        "post", f"{recorder}/x", json={"a": 1}, headers={"Authorization": "Bearer t", "Accept": None}
    )
    assert response.status_code == 200 and response.json() == {} and answered == [200]
    sent = _Recorder.seen[0]
    assert sent["Authorization"] == "Bearer t" and sent["User-Agent"] == "flexsync"
    assert "Accept" not in sent  # a None header drops the session's, as requests does
    assert sent["Content-Type"] == "application/json" and json.loads(sent["body"]) == {"a": 1}


def test_a_cookie_a_server_set_is_sent_back(recorder: str):
    session = pooled_session(4)
    session.request("POST", f"{recorder}/set-cookie", data=b"x")
    session.request("POST", f"{recorder}/next", data=b"y")
    assert "Cookie" not in _Recorder.seen[0]
    assert _Recorder.seen[1]["Cookie"] == "flavour=oat"


def test_credentials_in_the_url_still_become_basic_auth(recorder: str):
    session = pooled_session(4)
    session.request("POST", recorder.replace("http://", "http://flex:sync@") + "/x", data=b"z")
    assert _Recorder.seen[0]["Authorization"] == "Basic " + base64.b64encode(b"flex:sync").decode()


def test_the_settings_are_merged_once_per_origin_until_the_session_s_own_change(
    monkeypatch: pytest.MonkeyPatch,
):
    merges: list[str] = []
    real = requests.Session.merge_environment_settings

    def counted(self: requests.Session, url: str, *args: Any) -> Any:
        merges.append(url)
        return real(self, url, *args)

    monkeypatch.setattr(requests.Session, "merge_environment_settings", counted)
    session = pooled_session(4)
    merges.clear()  # the CA bundle's look when the session was made
    first = session.merge_environment_settings("https://api.example/a", {}, None, None, None)
    first["proxies"]["https"] = "http://changed-by-a-caller:1"  # a caller's change stays its own
    again = session.merge_environment_settings("https://api.example/b", {}, None, None, None)
    assert merges == ["https://api.example/a"] and "https" not in again["proxies"]
    session.cert = "/etc/flexsync/client.pem"  # the session's own settings are part of what was merged
    merged = session.merge_environment_settings("https://api.example/c", {}, None, None, None)
    assert merged["cert"] == "/etc/flexsync/client.pem"
    # A call's own proxies are merged afresh every time.
    asked = session.merge_environment_settings(
        "https://api.example/d", {"https": "http://p:1"}, None, None, None
    )
    assert asked["proxies"]["https"] == "http://p:1"
    assert merges == ["https://api.example/a", "https://api.example/c", "https://api.example/d"]
