"""The package installs as declared: every folder of odml's code is a package
of the wheel (a missing one works in the editable install and fails after
`pip install .`), and every module odml imports comes from the standard
library, odml itself or a dependency pyproject.toml declares (scipy was
imported and not declared). The install itself, in a fresh virtual
environment, is a documented check: docs/benchmarks/install.md."""

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tests", "examples", "docs", "build", "dist", "runs"}


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _code_folders():
    for d in sorted(p for p in ROOT.rglob("*") if p.is_dir()):
        rel = d.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(x.startswith(".") or x == "__pycache__" or x.endswith(".egg-info")
                                       for x in rel.parts):
            continue
        if any(d.glob("*.py")):
            yield "odml." + ".".join(rel.parts)


def _name(req: str) -> str:
    for sep in "=<>!~[; @":
        req = req.split(sep)[0]
    return req.strip().lower().replace("_", "-")


def test_every_code_folder_is_a_package_of_the_wheel():
    packages = set(_project()["tool"]["setuptools"]["packages"])
    missing = [f for f in _code_folders() if f not in packages]
    assert not missing, f"folders of odml code not in [tool.setuptools] packages: {missing}"


def test_every_import_is_stdlib_odml_or_declared():
    project = _project()["project"]
    declared = {_name(r) for r in project["dependencies"]}
    dists = packages_distributions()  # import name -> the distributions that provide it
    undeclared = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or rel.parts[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                top = n.split(".")[0]
                if top == "odml" or top in sys.stdlib_module_names or top == "__future__":
                    continue
                provided = {_name(d) for d in dists.get(top, [])}
                if not provided & declared:
                    undeclared.setdefault(top, f"{rel}:{node.lineno}")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
