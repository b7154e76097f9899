"""Configuration: one validated object; a bad value stops start-up with one line naming it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from config import ENVIRONMENT_VARIABLES, SettingsError, export_metrics_directory, load_settings

KEY = Fernet.generate_key().decode()


def test_defaults_follow_the_brief():
    settings = load_settings({"FLEXSYNC_SECRET_KEY": KEY})
    assert settings.amqp_url == "amqp://guest:guest@localhost:5672/%2F"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.intacct_api_url == "https://api.intacct.com/ia/api/v1"
    assert settings.intacct_client_id == "4d02d25de337869dfecd.app.sage.com"
    assert settings.intacct_sender_id == "LendARR"
    assert settings.intacct_max_concurrency_per_company == 2
    assert settings.reconcile_interval_seconds == 900
    assert settings.archive_max_age == "7D"
    assert settings.port == 8000
    assert settings.log_format == "json"


def test_every_variable_of_the_brief_is_read():
    brief = {
        "AMQP_URL",
        "DATABASE_URL",
        "FLEXSYNC_SECRET_KEY",
        "INTACCT_API_URL",
        "INTACCT_CLIENT_ID",
        "INTACCT_CLIENT_SECRET",
        "INTACCT_SENDER_ID",
        "INTACCT_SENDER_PASSWORD",
        "INTACCT_WEBHOOK_JWKS_URL",
        "INTACCT_WEBHOOK_ISSUER",
        "FLEXPOINT_API_URL",
        "FLEXPOINT_API_TOKEN",
        "PUBLIC_BASE_URL",
        "INTACCT_MAX_CONCURRENCY_PER_COMPANY",
        "RECONCILE_INTERVAL_SECONDS",
        "INTACCT_WEBHOOK_SCHEME",
        "ARCHIVE_MAX_AGE",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "PORT",
    }
    assert brief <= set(ENVIRONMENT_VARIABLES)
    environ = {
        "FLEXSYNC_SECRET_KEY": KEY,
        "INTACCT_MAX_CONCURRENCY_PER_COMPANY": "4",
        "ARCHIVE_MAX_AGE": "36h",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "console",
        "PORT": "9001",
        "PUBLIC_BASE_URL": "https://sync.example/",
        "DATABASE_URL": "postgresql://u@db/flexsync",
    }
    settings = load_settings(environ)
    assert settings.intacct_max_concurrency_per_company == 4
    assert settings.archive_max_age == "36h"
    assert settings.log_level == "DEBUG"
    assert settings.port == 9001
    assert settings.public_base_url == "https://sync.example"


def test_platform_variables_are_read_here_too():
    defaults = load_settings({"FLEXSYNC_SECRET_KEY": KEY})
    assert (defaults.web_concurrency, defaults.prometheus_multiproc_dir) == (2, None)
    settings = load_settings(
        {"FLEXSYNC_SECRET_KEY": KEY, "WEB_CONCURRENCY": "5", "PROMETHEUS_MULTIPROC_DIR": "/run/metrics"}
    )
    assert (settings.web_concurrency, settings.prometheus_multiproc_dir) == (5, "/run/metrics")


def test_web_exports_a_metrics_directory_for_its_workers(tmp_path):
    given = load_settings({"FLEXSYNC_SECRET_KEY": KEY, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    environ: dict[str, str] = {}
    assert export_metrics_directory(given, environ).prometheus_multiproc_dir == str(tmp_path)
    assert environ == {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    unset = load_settings({"FLEXSYNC_SECRET_KEY": KEY})
    made = export_metrics_directory(unset, environ).prometheus_multiproc_dir
    assert made is not None and made != str(tmp_path) and Path(made).is_dir()
    assert environ == {"PROMETHEUS_MULTIPROC_DIR": made}
    Path(made).rmdir()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AMQP_URL", "http://broker"),
        ("DATABASE_URL", "mysql://db"),
        ("FLEXSYNC_SECRET_KEY", "not-a-key"),
        ("INTACCT_API_URL", "api.intacct.com"),
        ("INTACCT_MAX_CONCURRENCY_PER_COMPANY", "0"),
        ("RECONCILE_INTERVAL_SECONDS", "soon"),
        ("ARCHIVE_MAX_AGE", "7 days"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
        ("PORT", "70000"),
        ("WEB_CONCURRENCY", "0"),
    ],
)
def test_a_malformed_value_is_one_line_naming_it(name, value):
    with pytest.raises(SettingsError) as raised:
        load_settings({"FLEXSYNC_SECRET_KEY": KEY, name: value})
    message = str(raised.value)
    assert message.startswith(f"{name} is malformed")
    assert "\n" not in message


def test_the_secret_key_is_required_outside_development_and_never_echoed():
    with pytest.raises(SettingsError, match="FLEXSYNC_SECRET_KEY is required outside development"):
        load_settings({})
    assert load_settings({"FLEXSYNC_ENV": "development"}).flexsync_secret_key == ()
    with pytest.raises(SettingsError) as raised:
        load_settings({"FLEXSYNC_SECRET_KEY": "s3cr3t-but-wrong"})
    assert "s3cr3t-but-wrong" not in str(raised.value)


def test_several_keys_allow_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert load_settings({"FLEXSYNC_SECRET_KEY": f"{new}, {old}"}).flexsync_secret_key == (new, old)


def test_a_process_names_what_it_needs():
    settings = load_settings({"FLEXSYNC_SECRET_KEY": KEY})
    with pytest.raises(SettingsError, match="INTACCT_WEBHOOK_JWKS_URL is required by the web process"):
        settings.require("INTACCT_WEBHOOK_JWKS_URL", process="web")


def test_the_webhook_scheme_defaults_to_sage_signature_and_is_checked():
    assert load_settings({"FLEXSYNC_SECRET_KEY": KEY}).intacct_webhook_scheme == "sage-signature"
    for scheme in ("sage-signature", "bearer-jwks", "any"):
        environ = {"FLEXSYNC_SECRET_KEY": KEY, "INTACCT_WEBHOOK_SCHEME": f" {scheme.upper()} "}
        assert load_settings(environ).intacct_webhook_scheme == scheme
    with pytest.raises(SettingsError, match="INTACCT_WEBHOOK_SCHEME is malformed: expected one of"):
        load_settings({"FLEXSYNC_SECRET_KEY": KEY, "INTACCT_WEBHOOK_SCHEME": "jwt"})


@pytest.mark.parametrize(
    ("scheme", "given", "missing"),
    [
        ("sage-signature", {}, "INTACCT_CLIENT_SECRET"),
        ("bearer-jwks", {"INTACCT_WEBHOOK_ISSUER": "https://i"}, "INTACCT_WEBHOOK_JWKS_URL"),
        ("bearer-jwks", {"INTACCT_WEBHOOK_JWKS_URL": "https://i/jwks"}, "INTACCT_WEBHOOK_ISSUER"),
        (
            "any",
            {"INTACCT_WEBHOOK_JWKS_URL": "https://i/jwks", "INTACCT_WEBHOOK_ISSUER": "i"},
            "INTACCT_CLIENT_SECRET",
        ),
        ("any", {"INTACCT_CLIENT_SECRET": "s"}, "INTACCT_WEBHOOK_JWKS_URL"),
    ],
)
def test_the_web_process_requires_what_its_webhook_scheme_needs(scheme, given, missing):
    settings = load_settings({"FLEXSYNC_SECRET_KEY": KEY, "INTACCT_WEBHOOK_SCHEME": scheme, **given})
    with pytest.raises(SettingsError, match=f"^{missing} is required by INTACCT_WEBHOOK_SCHEME={scheme}"):
        settings.require_webhook_scheme(process="web")


def test_a_complete_scheme_passes_and_several_client_secrets_are_split():
    settings = load_settings(
        {"FLEXSYNC_SECRET_KEY": KEY, "INTACCT_CLIENT_SECRET": " new-secret , old-secret ,"}
    )
    settings.require_webhook_scheme(process="web")  # raises nothing
    assert settings.intacct_client_secrets == ("new-secret", "old-secret")


def test_secrets_never_appear_in_the_settings_repr():
    settings = load_settings(
        {
            "FLEXSYNC_SECRET_KEY": KEY,
            "INTACCT_CLIENT_SECRET": "client-secret-value",
            "FLEXPOINT_API_TOKEN": "flexpoint-token-value",
            "AMQP_URL": "amqp://u:broker-password@h/%2F",
        }
    )
    text = repr(settings)
    for secret in (KEY, "client-secret-value", "flexpoint-token-value", "broker-password"):
        assert secret not in text


def test_the_cli_stops_with_one_line_on_a_bad_setting(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "topology"],
        env={"PATH": "/usr/bin:/bin", "FLEXSYNC_ENV": "development", "PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "flexsync: PORT is malformed: expected a whole number, got 'eighty'"
    ]


ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = (
    "broker",
    "cli",
    "clients",
    "config",
    "ingest",
    "observability",
    "processes",
    "reliability",
    "console",
    "schemas",
    "store",
    "workers",
)
# TEMPORARY: their owners move these readings to Settings; remove each entry once it is done.
NOT_YET_MOVED = {"ingest/server.py", "observability/metrics.py"}


def _reads_the_environment(path: Path) -> bool:
    names = ("environ", "getenv", "environb")
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        by_attribute = (
            isinstance(node, ast.Attribute)
            and node.attr in names
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        by_import = (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in names for alias in node.names)
        )
        if by_attribute or by_import:
            return True
    return False


def test_nothing_reads_the_environment_outside_config():
    readers = {
        path.relative_to(ROOT).as_posix()
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if _reads_the_environment(path)
    }
    assert readers - NOT_YET_MOVED == {"config/settings.py"}


def test_amqp_url_may_name_the_nodes_of_a_cluster():
    settings = load_settings(
        {"FLEXSYNC_SECRET_KEY": KEY, "AMQP_URL": " amqp://u:p@n1:5701/%2F , amqps://u:p@n2:5702/%2F/"}
    )
    # Still one string, each URL trimmed, in the order given (the order nodes are tried in).
    assert settings.amqp_url == "amqp://u:p@n1:5701/%2F,amqps://u:p@n2:5702/%2F"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("amqp://u:p@n1/%2F,http://u:node-password@n2/%2F", "URL 2 (n2)"),
        ("amqp://u:p@n1/%2F,amqp://", "URL 2 (no host)"),
        ("amqp://u:p@n1/%2F,,amqp://u:p@n3/%2F", "an empty one"),
        ("amqp://u:p@n1/%2F,", "an empty one"),
    ],
)
def test_a_bad_node_in_amqp_url_is_named_in_one_line(value, named):
    with pytest.raises(SettingsError) as caught:
        load_settings({"FLEXSYNC_SECRET_KEY": KEY, "AMQP_URL": value})
    message = str(caught.value)
    assert message.startswith("AMQP_URL is malformed") and named in message
    assert "\n" not in message and "node-password" not in message
