"""The installed project must ship every top-level package (an editable install imports only those)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"tests", "bench"}


def test_every_top_level_package_is_in_the_distribution():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in NOT_SHIPPED and not path.parent.name.startswith(".")
    }
    assert packages, "no packages found next to pyproject.toml"
    missing = sorted(name for name in packages if not any(fnmatch(name, p) for p in patterns))
    assert missing == [], f"add these to [tool.setuptools.packages.find] include: {missing}"
