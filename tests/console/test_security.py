"""Nobody gets in without the token; no cross-site write gets through; the receiver serves no console."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import main
from config import SettingsError, load_settings
from console.app import create_app
from console.security import token_matches
from tests.console.conftest import TOKEN, csrf_of, sign_in


@pytest.mark.parametrize(
    "path", ["/", "/connections", "/dead", "/archive", "/postings", "/audit", "/dead/abc"]
)
def test_a_page_without_a_session_sends_to_the_sign_in(console, path):
    response = console.test_client().get(path)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_data_and_actions_without_a_session_are_refused(console):
    client = console.test_client()
    assert client.get("/overview/series.json").status_code == 401
    refused = client.post("/dead/action", data={"verb": "purge", "scope": "selection"})
    assert refused.status_code == 401


def test_a_wrong_token_is_refused_and_audited(console, signed_in):
    client = console.test_client()
    response = sign_in(client, token="not-the-token-at-all")
    assert response.status_code == 401 and "not the console token" in response.text
    assert client.get("/").status_code == 302
    audit = signed_in.get("/audit").text
    assert "refused: wrong token" in audit and "signed in" in audit
    assert TOKEN not in audit


@pytest.mark.parametrize(
    "target",
    [
        "/%09/evil.example",  # a tab werkzeug drops: "Location: //evil.example"
        "/%0A/evil.example",
        "/%0D%0A/evil.example",
        "//evil.example",
        "///evil.example",
        "/%5Cevil.example",  # "/\evil.example": browsers read "\" as "/"
        "/%5C%5Cevil.example",
        "https://evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
        " //evil.example",
        "/dead%00",
        "/\u2028/evil.example",
    ],
)
def test_sign_in_never_redirects_off_this_host(console, target):
    client = console.test_client()
    page = client.get("/login")
    response = client.post(
        f"/login?next={target}", data={"token": TOKEN, "name": "dana", "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"  # the overview, whatever was asked


@pytest.mark.parametrize("target", ["/dead", "/dead/abc?reason=x", "/connections"])
def test_sign_in_returns_to_the_page_asked_for_on_this_host(console, target):
    client = console.test_client()
    page = client.get("/login")
    response = client.post(
        "/login", query_string={"next": target}, data={"token": TOKEN, "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == target


def test_the_session_cookie_is_httponly_and_strict_and_secure_in_production(console_settings):
    for env, secure in (("test", False), ("production", True)):
        app = create_app(console_settings.with_overrides(flexsync_env=env))
        client = app.test_client()
        cookie = sign_in(client).headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert ("Secure" in cookie) is secure
        app.extensions["flexsync.console"].close()


PLAIN_HTTP = "http://console.internal.example"


def _production_console(console_settings, **overrides):
    return create_app(console_settings.with_overrides(flexsync_env="production", **overrides))


def test_a_console_over_plain_http_says_on_the_sign_in_page_what_to_do(console_settings):
    app = _production_console(console_settings)
    try:
        client = app.test_client()
        page = client.get("/login", base_url=PLAIN_HTTP)
        assert page.status_code == 200
        # Before anyone tries: the cookie is Secure, so the browser will not send it back.
        assert "https://console.internal.example/login" in page.text
        assert "FLEXSYNC_CONSOLE_ALLOW_HTTP" in page.text
        # A browser does not send the Secure cookie back over http: the sign-in has no session.
        client.delete_cookie(app.config["SESSION_COOKIE_NAME"], domain="console.internal.example")
        refused = client.post(
            "/login",
            base_url=PLAIN_HTTP,
            data={"token": TOKEN, "name": "dana", "csrf_token": csrf_of(page.text)},
        )
        assert refused.status_code == 400
        assert "FLEXSYNC_CONSOLE_ALLOW_HTTP" in refused.text and "https://" in refused.text
        assert TOKEN not in refused.text
    finally:
        app.extensions["flexsync.console"].close()


@pytest.mark.parametrize(
    ("base_url", "headers"),
    [
        ("https://console.internal.example", {}),
        ("http://localhost", {}),
        ("http://127.0.0.1:8000", {}),
        (PLAIN_HTTP, {"X-Forwarded-Proto": "https"}),  # behind a proxy that terminates TLS
    ],
)
def test_no_plain_http_notice_where_the_cookie_comes_back(console_settings, base_url, headers):
    app = _production_console(console_settings)
    try:
        page = app.test_client().get("/login", base_url=base_url, headers=headers)
        assert page.status_code == 200 and "FLEXSYNC_CONSOLE_ALLOW_HTTP" not in page.text
    finally:
        app.extensions["flexsync.console"].close()


def test_allowing_plain_http_drops_secure_from_the_cookie_and_the_notice(console_settings):
    app = _production_console(console_settings, flexsync_console_allow_http=True)
    try:
        client = app.test_client()
        page = client.get("/login", base_url=PLAIN_HTTP)
        assert "FLEXSYNC_CONSOLE_ALLOW_HTTP" not in page.text
        signed = client.post(
            "/login", base_url=PLAIN_HTTP, data={"token": TOKEN, "csrf_token": csrf_of(page.text)}
        )
        assert signed.status_code == 302
        assert "Secure" not in signed.headers["Set-Cookie"] and "HttpOnly" in signed.headers["Set-Cookie"]
    finally:
        app.extensions["flexsync.console"].close()


def test_the_plain_http_setting_is_read_and_checked():
    base = {"FLEXSYNC_ENV": "development"}
    assert load_settings(base).flexsync_console_allow_http is False
    assert load_settings({**base, "FLEXSYNC_CONSOLE_ALLOW_HTTP": "true"}).flexsync_console_allow_http is True
    assert load_settings({**base, "FLEXSYNC_CONSOLE_ALLOW_HTTP": "0"}).flexsync_console_allow_http is False
    with pytest.raises(SettingsError, match=r"^FLEXSYNC_CONSOLE_ALLOW_HTTP is malformed"):
        load_settings({**base, "FLEXSYNC_CONSOLE_ALLOW_HTTP": "maybe"})


def test_a_cross_site_post_is_refused_even_with_a_session(signed_in):
    token = csrf_of(signed_in.get("/dead").text)
    form = {"verb": "purge", "scope": "selection", "csrf_token": token}
    evil = signed_in.post("/dead/action", data=form, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "cross-site" in evil.text
    fetched = signed_in.post("/dead/action", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403
    # Same origin but no CSRF token (a form posted from elsewhere without Origin): refused too.
    tokenless = signed_in.post("/dead/action", data={"verb": "purge", "scope": "selection"})
    assert tokenless.status_code == 403 and "CSRF" in tokenless.text
    # The same request, from this origin and with its token, is let through (to the confirmation).
    ours = signed_in.post(
        "/dead/action", data=form, headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    )
    assert ours.status_code == 200 and "Please confirm" in ours.text


def test_the_token_is_compared_in_constant_time_and_never_rendered(signed_in):
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, TOKEN[:-1] + "x")
    for path in ("/", "/connections", "/dead", "/archive", "/postings", "/audit"):
        page = signed_in.get(path)
        assert page.status_code == 200, path
        assert TOKEN not in page.text


def test_the_receiver_serves_no_console_and_the_console_no_webhooks(receiver, signed_in):
    for path in ("/login", "/dead", "/audit", "/connections"):
        assert receiver.client.get(path).status_code == 404, path
    assert receiver.client.post("/login", data={"token": TOKEN}).status_code in (404, 405)
    assert signed_in.post(receiver.url(), json={}).status_code in (403, 404)
    assert signed_in.get(receiver.url()).status_code == 404


def test_the_console_token_setting_is_required_and_checked():
    with pytest.raises(SettingsError, match=r"^FLEXSYNC_CONSOLE_TOKEN is malformed: expected at least 16"):
        load_settings({"FLEXSYNC_ENV": "development", "FLEXSYNC_CONSOLE_TOKEN": "short"})
    settings = load_settings({"FLEXSYNC_ENV": "development", "FLEXSYNC_CONSOLE_TOKEN": "s" * 20})
    assert settings.flexsync_console_token == "s" * 20 and "s" * 20 not in repr(settings)


def test_flexsync_console_without_its_token_stops_with_one_line(monkeypatch):
    monkeypatch.delenv("FLEXSYNC_CONSOLE_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["console"], env={"FLEXSYNC_ENV": "development"})
    assert result.exit_code == 2
    assert result.output.strip() == (
        "flexsync: FLEXSYNC_CONSOLE_TOKEN is required by the console process; set it in the environment"
    )


def _attempt(client, token: str, name: str = "mallory"):
    page = client.get("/login")
    return client.post("/login", data={"token": token, "name": name, "csrf_token": csrf_of(page.text)})


def test_failed_sign_ins_are_throttled_by_client_and_collapsed_in_the_audit(console, signed_in):
    attacker = console.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    answers = [_attempt(attacker, f"guess-{n:04d}-not-the-token") for n in range(30)]
    codes = [answer.status_code for answer in answers]
    # A few honest typos are answered as such; then the client is paused, whatever it sends.
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in answers[-1].text
    # Even the right token gets no answer from a paused client: no oracle while paused.
    assert _attempt(attacker, TOKEN).status_code == 429
    # Thirty attempts left two rows in the trail, not thirty.
    with console.extensions["flexsync.console"].engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT actor, outcome FROM console_audit WHERE action = 'sign-in' AND actor LIKE '%203.0.113.9%'"
        ).all()
    assert len(rows) == 2, rows
    assert "refused: wrong token" in rows[0].outcome and "5 times" in rows[1].outcome
    # Another client is not paused by this one.
    other = console.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert sign_in(other).status_code == 302


def test_the_name_given_at_sign_in_is_shown_as_the_operators_claim(console, signed_in):
    page = signed_in.get("/audit").text
    assert "dana (claimed at sign-in" in page
    assert "as you claim it" in console.test_client().get("/login").text


def _cookie_of(client, app) -> str:
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def _with_cookie(app, value: str):
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return client


def test_the_session_key_is_not_derived_from_the_token_alone(console_settings, tmp_path):
    import hashlib
    import hmac

    first = create_app(console_settings)
    again = create_app(console_settings)  # the same install, restarted
    elsewhere = create_app(console_settings.with_overrides(database_url=f"sqlite:///{tmp_path}/other.db"))
    try:
        key = first.config["SECRET_KEY"]
        # Knowing the token (or guessing it) is not enough to recompute the key from a cookie.
        assert key != hmac.new(TOKEN.encode(), b"flexsync-console-session", hashlib.sha256).digest()
        assert key != elsewhere.config["SECRET_KEY"]
        assert again.config["SECRET_KEY"] == key  # kept by the install: a restart keeps sessions
        client = first.test_client()
        assert sign_in(client).status_code == 302
        assert _with_cookie(again, _cookie_of(client, first)).get("/dead").status_code == 200
        assert _with_cookie(elsewhere, _cookie_of(client, first)).get("/dead").status_code == 302
    finally:
        for app in (first, again, elsewhere):
            app.extensions["flexsync.console"].close()


def test_signing_out_revokes_a_copied_cookie(console):
    client = console.test_client()
    assert sign_in(client).status_code == 302
    copied = _cookie_of(client, console)
    assert _with_cookie(console, copied).get("/dead").status_code == 200
    token = csrf_of(client.get("/dead").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replayed = _with_cookie(console, copied).get("/dead")
    assert replayed.status_code == 302 and replayed.headers["Location"].startswith("/login")


def test_a_token_change_ends_every_session(console_settings):
    before = create_app(console_settings)
    after = create_app(
        console_settings.with_overrides(flexsync_console_token="a-new-console-token-9876543210")
    )
    try:
        client = before.test_client()
        assert sign_in(client).status_code == 302
        assert _with_cookie(after, _cookie_of(client, before)).get("/dead").status_code == 302
    finally:
        before.extensions["flexsync.console"].close()
        after.extensions["flexsync.console"].close()


def test_over_https_the_cookie_is_host_prefixed_and_hsts_is_sent(console_settings):
    app = _production_console(console_settings)
    plain = _production_console(console_settings, flexsync_console_allow_http=True)
    try:
        client = app.test_client()
        signed = sign_in(client)
        cookie = signed.headers["Set-Cookie"]
        assert cookie.startswith("__Host-flexsync_console=")
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
        hsts = signed.headers["Strict-Transport-Security"]
        assert "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000
        assert "Strict-Transport-Security" in client.get("/login").headers
        # Plain http allowed on a trusted network: a __Host- cookie would need Secure, and HSTS
        # would lock browsers out of the only scheme the console answers.
        page = plain.test_client().get("/login", base_url=PLAIN_HTTP)
        assert "Strict-Transport-Security" not in page.headers
        assert plain.config["SESSION_COOKIE_NAME"] == "flexsync_console"
    finally:
        app.extensions["flexsync.console"].close()
        plain.extensions["flexsync.console"].close()
