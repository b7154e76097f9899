"""Packaging: every top-level package ships, and the sandbox is a distribution of its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"tests", "bench", "sandbox"}  # sandbox/ ships as flexsync-sandbox


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


# --- the sandbox is its own distribution ----------------------------------------------------

# Not yaml: kombu imports it when present (to offer a YAML serializer) and does without it.
SANDBOX_ONLY_MODULES = ("jsonschema", "rfc3339_validator", "honcho")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def _loaded_after(code: str) -> list[str]:
    """The sandbox (and sandbox-only) modules loaded in a fresh interpreter after running ``code``."""
    report = "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = _python(code + report)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    return [m for m in modules if m.split(".")[0] in ("sandbox", *SANDBOX_ONLY_MODULES)]


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower() for spec in specs}


def _sandbox_project() -> dict:
    return tomllib.loads((ROOT / "sandbox" / "pyproject.toml").read_text())


def test_the_sandbox_is_a_separate_distribution_the_product_does_not_ship():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(fnmatch("sandbox", p) or fnmatch("sandbox.flexpoint", p) for p in patterns)
    assert not any(key.startswith("sandbox") for key in config["tool"]["setuptools"]["package-data"])
    assert "sandbox" not in config["project"].get("optional-dependencies", {})
    sandbox = _sandbox_project()
    assert sandbox["project"]["name"] == "flexsync-sandbox"
    # The folder is the import package `sandbox`, with every subpackage and the contract's YAML.
    setuptools = sandbox["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"sandbox": "."}
    on_disk = {
        ".".join(("sandbox", *path.parent.relative_to(ROOT / "sandbox").parts))
        for path in (ROOT / "sandbox").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk
    assert setuptools["package-data"]["sandbox.flexpoint"] == ["*.yaml"]


def test_product_dependencies_leave_the_sandbox_its_own():
    product = _names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    sandbox = _names(_sandbox_project()["project"]["dependencies"])
    assert {"pyyaml", "jsonschema", "rfc3339-validator", "honcho", "flask", "pika"} <= sandbox
    assert "flexsync" not in sandbox
    assert product.isdisjoint({"pyyaml", "jsonschema", "rfc3339-validator", "honcho"})


def test_web_imports_no_sandbox_module():
    # What `flexsync web` loads: the CLI, the receiver's app factory and its gunicorn runner.
    loaded = _loaded_after(
        "from cli.main import main\n"
        "main.get_command(None, 'web')\n"
        "from ingest.app import create_app\n"
        "from ingest.server import serve\n"
    )
    assert loaded == []


def test_help_lists_the_sandbox_without_importing_it():
    result = _python("from cli.main import main\nmain(['--help'], standalone_mode=False)")
    assert result.returncode == 0, result.stderr
    assert "sandbox" in result.stdout
    assert _loaded_after("from cli.main import main\nmain(['--help'], standalone_mode=False)") == []


def test_sandbox_command_loads_when_invoked():
    result = _python("from cli.main import main\nmain(['sandbox', '--help'])")
    assert result.returncode == 0, result.stderr
    assert "--intacct-port" in result.stdout


def test_sandbox_without_its_dependencies_says_what_to_install():
    # A None entry in sys.modules makes `import yaml` fail as when the package is absent.
    result = _python(
        "import sys\nsys.modules['yaml'] = None\nfrom cli.main import main\nmain(['sandbox', '--help'])"
    )
    assert result.returncode == 1
    assert "pip install -e sandbox/" in result.stderr
    assert "'yaml'" in result.stderr
    assert "Traceback" not in result.stderr


# A finder that answers for `sandbox` as the import system does for a package nowhere installed.
NO_SANDBOX = """
import sys
class NoSandbox:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "sandbox":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoSandbox())
"""


def test_sandbox_not_installed_says_what_to_install():
    result = _python(NO_SANDBOX + "from cli.main import main\nmain(['sandbox', '--help'])")
    assert result.returncode == 1
    assert "flexsync-sandbox" in result.stderr
    assert "pip install -e sandbox/" in result.stderr
    assert "Traceback" not in result.stderr


# --- the lock file ------------------------------------------------------------------------


def _locked() -> dict[str, tuple[Version, list[str]]]:
    """requirements.lock as {name: (version, hashes)}."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        assert version, f"not an exact pin: {requirement}"
        hashes = [option.removeprefix("--hash=") for option in options if option.startswith("--hash=")]
        entries[canonicalize_name(name)] = (Version(version), hashes)
    return entries


def test_the_lock_pins_every_dependency_within_pyproject_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        *project["dependencies"],
        *_sandbox_project()["project"]["dependencies"],
        *project["optional-dependencies"]["dev"],
    ]
    locked = _locked()
    stale = []
    for spec in wanted:
        requirement = Requirement(spec)
        pin = locked.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin[0], prereleases=True):
            stale.append(spec)
    assert stale == [], f"requirements.lock is stale for {stale}: run ./dev lock"
    unhashed = sorted(name for name, (_, hashes) in locked.items() if not hashes)
    assert unhashed == []
