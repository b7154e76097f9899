"""The sandbox is its own distribution: no module under sandbox/ may import the service's packages.

It stands in for Sage Intacct and FlexPoint, so it follows their contracts (../shared/spec), not the
service's code; and it installs without the service. Its own copy of the brief's object table must
still say what the service's says, or the simulator would test the service against another world.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from sandbox.catalog import TRIGGER_OBJECTS

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "sandbox"


def product_packages() -> set[str]:
    """The top-level packages the service's distribution ships (from pyproject.toml)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in patterns}


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def test_the_product_package_list_is_what_the_check_looks_for():
    packages = product_packages()
    assert {"config", "schemas", "broker", "observability", "cli"} <= packages
    assert "sandbox" not in packages


def test_no_sandbox_module_imports_a_product_package():
    product = product_packages()
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(SANDBOX.rglob("*.py"))
        for line, module in imported_roots(path)
        if module in product
    ]
    assert offenders == []


def test_the_check_sees_nested_and_dynamic_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import importlib\n"
        "def f():\n"
        "    from config.settings import X\n"
        "    import broker.urls\n"
        "    importlib.import_module('schemas.catalog')\n"
        "from .local import y\n"
    )
    assert [m for _, m in imported_roots(sample)] == ["importlib", "config", "broker", "schemas"]


def test_the_sandbox_table_of_objects_agrees_with_the_service():
    from schemas.catalog import OBJECTS

    service = {(o.intacct_object, o.rest_path, o.resource) for o in OBJECTS}
    assert {(o.name, o.rest_path, o.resource) for o in TRIGGER_OBJECTS} == service
