"""The FlexPoint simulator validates against a copy of FlexPoint's contract shipped in the package;
it must stay the file FlexPoint publishes (``shared/spec`` in a folder above the repository, where
present: beside the main checkout, or some levels up from a worktree)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest


def _published() -> Path | None:
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "spec" / "flexpoint-sync-api.yaml"
        if candidate.is_file():
            return candidate
    return None


def test_the_shipped_contract_is_the_published_one():
    published = _published()
    if published is None:
        pytest.skip("no shared/spec/flexpoint-sync-api.yaml above the repository to compare with")
    shipped = files("sandbox.flexpoint").joinpath("flexpoint-sync-api.yaml").read_bytes()
    assert shipped == published.read_bytes(), (
        "sandbox/flexpoint/flexpoint-sync-api.yaml drifted from FlexPoint's"
    )
