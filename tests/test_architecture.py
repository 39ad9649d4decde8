"""The architecture, checked: dependencies point one way, and the verbs ask a
model's family what it is instead of testing names, shapes or suffixes.

    cli -> {nas, compress} -> {train, exporters, devices} -> pose -> zoo -> data -> base

(base: errors, files, documents, flatbuffer, litert, runfolder, numeric, pareto,
_tf, _fd). Packages of one layer do not import each other. zoo holds the
model families, which read their data through data/, hence data below zoo;
pose (the BlazePose pipeline) runs zoo's models and is run by training."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast  # the fast tier (make test-fast)

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ["odml", "odml.errors", "odml.files", "odml.documents", "odml.numeric", "odml._tf", "odml._fd", "odml.flatbuffer",
     "odml.litert", "odml.runfolder", "odml.pareto"],
    ["odml.data"],
    ["odml.zoo"],
    ["odml.pose", "odml.report"],
    ["odml.train", "odml.exporters", "odml.devices"],
    ["odml.nas", "odml.compress"],
    ["odml.cli"],
]
VERBS = ("cli", "exporters", "devices", "compress", "train", "nas")  # where no kind checks may be


def _modules():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        if rel.parts[0] in ("tests", ".venv", "build", "examples") or rel.parts[0].startswith("."):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield "odml" + "".join("." + x for x in parts), p


def _component(module: str) -> tuple[int, str]:
    """(layer index, the package or base module) of a module."""
    best = None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and (best is None or len(n) > len(best[1])):
                best = (i, n)
    assert best is not None, f"{module} is in no layer; add it to LAYERS"
    return best


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("odml"):
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("odml"):
                yield name, node.lineno


def test_help_lists_verbs_without_importing_tensorflow():
    code = ("import sys\nfrom odml.cli.app import app\n"
            "print(','.join(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_every_module_sits_in_a_layer_and_imports_only_below_it():
    bad = []
    modules = list(_modules())
    assert len(modules) > 60
    for module, path in modules:
        layer, comp = _component(module)
        for target, line in _imports(path, module):
            t_layer, t_comp = _component(target)
            if t_layer > layer or (t_layer == layer and t_comp != comp and layer != 0):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {module} ({comp}) imports {target} ({t_comp})")
    assert not bad, "imports that point up or across a layer:\n" + "\n".join(bad)


def test_the_layering_check_catches_an_upward_import(tmp_path):
    """The check above can fail: an import of the CLI from a family is found."""
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from odml.cli.common import out\n")
    (target, _), = list(_imports(p, "odml.zoo.families.x"))
    assert _component(target)[0] > _component("odml.zoo.families.x")[0]


def _names():
    from odml.zoo.registry import families

    fams = families()
    models = {m for f in fams for m in (*f.models(), *f.hidden())}
    return {f.name for f in fams} | models, {f.config_type.__name__ for f in fams if f.config_type}


def _kind_checks(path: Path, names: set[str], configs: set[str]) -> list[str]:
    """Places that find out what kind of model something is by looking at it:
    isinstance/hasattr on a family's configuration or its attributes,
    getattr/hasattr on a family (a hook it may lack: hooks are declared on
    Family and called), a model or family name compared or matched, the rank
    of a shape compared, a text-data suffix tested."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def named(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v in names or any(v.startswith(n + "_") or v == n + "*" for n in names if len(n) > 3):
                return v
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("isinstance", "hasattr"):
            text = ast.unparse(node)
            if any(c in text for c in configs) or (node.func.id == "hasattr" and any(
                    a in text for a in ("'features'", "'build'", "'text'", "'vocab'", "'spec'"))):
                found.append(f"{node.lineno}: {text}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and node.args and re.search(r"\b(fam\w*|sf)\b|\.family\b|student_family", ast.unparse(node.args[0])):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "startswith", "endswith"):
            if any(named(a) for a in node.args):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            text = ast.unparse(node)
            if any(named(x) for x in parts) or any(
                    isinstance(x, (ast.Tuple, ast.List, ast.Set)) and any(named(e) for e in x.elts) for x in parts):
                found.append(f"{node.lineno}: {text}")
            if any(isinstance(x, ast.Call) and isinstance(x.func, ast.Name) and x.func.id == "len"
                   and "shape" in ast.unparse(x) for x in parts):
                found.append(f"{node.lineno}: {text}")
            if ".suffix" in text and any(s in text for s in ("'.tsv'", "'.csv'", "'.txt'")):
                found.append(f"{node.lineno}: {text}")
    return found


def test_the_verbs_ask_the_family_instead_of_testing_names_shapes_or_suffixes():
    names, configs = _names()
    assert {"pqrnn", "mobilebert_edgetpu_xs", "blazepose_detector", "ibn"} <= names and "PQRNNConfig" in configs
    bad = []
    for d in VERBS:
        for p in sorted((ROOT / d).glob("*.py")):
            bad += [f"{p.relative_to(ROOT)}:{x}" for x in _kind_checks(p, names, configs)]
    assert not bad, "kind checks outside the families:\n" + "\n".join(bad)


@pytest.mark.parametrize("code", [
    "if isinstance(cfg, PQRNNConfig): pass",
    "if model.startswith('mobilebert'): pass",
    "if name in ('pqrnn', 'pqrnn_tiny'): pass",
    "if len(x.shape) == 4: pass",
    "if Path(d).suffix.lower() in ('.tsv', '.csv'): pass",
    "if hasattr(cfg, 'features'): pass",
    "ok = Path(item).suffix in getattr(sf, 'file_suffixes', ())",
    "if hasattr(teacher.family, 'channel_scores'): pass",
])
def test_the_kind_check_finds_each_way_of_guessing(tmp_path, code):
    names, configs = _names()
    p = tmp_path / "verb.py"
    p.write_text(code + "\n")
    assert _kind_checks(p, names, configs), code


def test_every_hook_of_a_family_is_declared_on_family():
    """What a family adds to Family is private: every hook a verb may call
    is declared on Family with a default (one that says "not supported", or
    an empty one), so no verb reaches for one with getattr or hasattr."""
    from odml.zoo.family import Family
    from odml.zoo.registry import families

    own = sorted({f"{cls.__name__}.{k}" for f in families() for cls in type(f).__mro__
                  if cls is not Family and issubclass(cls, Family)
                  for k in vars(cls) if not k.startswith("_") and not hasattr(Family, k)})
    assert not own, "hooks a family provides that Family does not declare: " + ", ".join(own)

