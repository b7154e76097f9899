"""``flexsync payments list|show`` read the postings table; ``flexsync writeback`` names what it lacks."""

from __future__ import annotations

from click.testing import CliRunner

from cli.main import main
from clients.intacct.payments import reference_for
from store.db import create_engine_for, upgrade
from workers.writeback.store import PostingStore


def _env(settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "FLEXSYNC_ENV": "test",
        "FLEXSYNC_SECRET_KEY": ",".join(settings.flexsync_secret_key),
        "LOG_FORMAT": "console",
    }


def test_payments_list_and_show(settings):
    engine = create_engine_for(settings.database_url)
    upgrade(engine)
    postings = PostingStore(engine)
    claimed = postings.claim("acct-1", "pay-ok", "conn-1", lease_seconds=60)
    postings.record_posted(
        postings.intend(claimed, "creating", lease_seconds=60, settle_seconds=30, company_id="CO-1"), "5678"
    )
    postings.cancel_if_new("acct-1", "pay-gone", "conn-2", requested_at=None)
    engine.dispose()
    runner = CliRunner()

    listed = runner.invoke(main, ["payments", "list"], env=_env(settings))
    assert listed.exit_code == 0, listed.output
    assert "pay-ok" in listed.output and "5678" in listed.output and "cancelled" in listed.output

    quiet = runner.invoke(main, ["payments", "list", "--state", "posted", "-q"], env=_env(settings))
    assert quiet.output.split() == ["pay-ok"]
    by_connection = runner.invoke(
        main, ["payments", "list", "--connection", "conn-2", "-q"], env=_env(settings)
    )
    assert by_connection.output.split() == ["pay-gone"]

    shown = runner.invoke(main, ["payments", "show", "pay-ok"], env=_env(settings))
    assert shown.exit_code == 0
    assert reference_for("acct-1", "pay-ok") in shown.output and "attempts: 1" in shown.output
    assert "company: CO-1" in shown.output

    missing = runner.invoke(main, ["payments", "show", "nope"], env=_env(settings))
    assert missing.exit_code != 0 and "no posting for payment nope" in missing.output


def test_writeback_stops_with_one_line_naming_a_missing_setting(settings):
    result = CliRunner().invoke(main, ["writeback"], env=_env(settings))
    assert result.exit_code != 0
    assert "INTACCT_CLIENT_SECRET is required by the writeback process" in result.output
