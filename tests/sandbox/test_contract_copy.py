"""The FlexPoint simulator validates against a copy of FlexPoint's contract shipped in the package;
it must stay the file FlexPoint publishes (shared/spec beside the repository, where present)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

PUBLISHED = Path(__file__).resolve().parents[3] / "shared" / "spec" / "flexpoint-sync-api.yaml"


def test_the_shipped_contract_is_the_published_one():
    if not PUBLISHED.exists():
        pytest.skip(f"no published contract at {PUBLISHED} to compare with")
    shipped = files("sandbox.flexpoint").joinpath("flexpoint-sync-api.yaml").read_bytes()
    assert shipped == PUBLISHED.read_bytes(), (
        "sandbox/flexpoint/flexpoint-sync-api.yaml drifted from FlexPoint's"
    )
