"""The clients' HTTP session: the proxy and CA-bundle variables still apply, read once per host."""

from __future__ import annotations

import pytest

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
