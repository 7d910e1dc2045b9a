"""Imports point one way (DESIGN.md): every kinema import in every file, read with `ast`, against the table."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kinema"

# layer -> the other layers it may import; a layer may always import itself
ALLOWED = {
    "types": set(),  # types and config import only torch, stdlib and yaml
    "config": set(),
    "runtime": set(),  # process-wide host settings (the C allocator): stdlib only
    "files": set(),  # atomic writes and output checks: stdlib only
    "diffusion": {"types", "config"},
    "models": {"types", "config"},
    "data": {"types", "config"},
    "training": {"diffusion", "models", "data", "types", "config"},
    "evaluation": {"data", "models", "types", "config"},  # never training
    "inputs": {"models", "data", "types", "config"},  # user inputs -> tensors, prepared as the training data
    "pipeline": {"inputs", "diffusion", "models", "data", "types", "config"},
    "demo": {"pipeline", "data", "types", "config"},  # the demo and the web page: users of the pipeline
    "serve": {"pipeline", "diffusion", "data", "types", "config"},
    "commands": {"pipeline", "training", "evaluation", "demo", "serve", "diffusion", "models", "data", "types",
                 "config", "runtime"},  # what each command does
    "cli": {"commands", "pipeline", "training", "evaluation", "demo", "serve", "diffusion", "models", "data",
            "types", "config", "runtime"},
}
for _name, _deps in ALLOWED.items():  # files (atomic writes) and runtime (host facts) sit below every layer
    if _name not in ("types", "config", "runtime", "files"):
        _deps.update(("files", "runtime"))
ROOT = "kinema"  # kinema/__init__.py: the re-exports, which may import any layer but cli


def _layer(module: str) -> str:
    """The layer of a dotted module name: kinema.diffusion.samplers -> diffusion; kinema -> kinema."""
    parts = module.split(".")
    assert parts[0] == "kinema", module
    return parts[1] if len(parts) > 1 else ROOT


def _module_name(path: Path) -> tuple[str, bool]:
    """The dotted name of a file under kinema/ and whether it is a package __init__."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _targets(node, module: str, is_package: bool) -> list[str]:
    """The kinema modules an import statement reaches (absolute, with `from` names as candidate submodules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "kinema"]
    if node.level == 0:
        base = node.module or ""
    else:  # resolve a relative import against the importing file's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        keep = len(package) - (node.level - 1)
        assert keep >= 1, f"relative import beyond the top of kinema in {module}"
        base = ".".join(package[:keep] + ([node.module] if node.module else []))
    if base.split(".")[0] != "kinema":
        return []
    if base == "kinema":  # `from kinema import x`: x is a layer when it names one, else a root re-export
        return [f"kinema.{a.name}" if a.name in ALLOWED else "kinema" for a in node.names]
    return [base]


class _Imports(ast.NodeVisitor):
    """Collects (lineno, target module, inside a function?) for every import in a file."""

    def __init__(self, module, is_package):
        self.module, self.is_package, self.depth, self.found = module, is_package, 0, []

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node):
        self.found += [(node.lineno, t, self.depth > 0) for t in _targets(node, self.module, self.is_package)]

    visit_ImportFrom = visit_Import


def violations(path: Path, source: str) -> list[str]:
    """Every import in `source` (the text of `path`) that the design's arrows do not allow, as messages."""
    module, is_package = _module_name(path)
    layer = _layer(module)
    visitor = _Imports(module, is_package)
    visitor.visit(ast.parse(source, filename=str(path)))
    where = path.relative_to(PACKAGE.parent)
    if layer != ROOT and layer not in ALLOWED:
        return [f"{where}: layer {layer!r} is not in the design's import table; add it to DESIGN.md and ALLOWED"]
    bad = []
    for lineno, target, deferred in visitor.found:
        to = _layer(target)
        if to == layer:
            continue  # intra-package imports are always allowed
        if to == "cli":
            ok = False  # nothing imports cli
        elif layer == ROOT:
            ok = True
        elif to == ROOT:
            # the root re-exports every layer, so importing it at module level is an import cycle; a
            # call-time `import kinema` (for metadata such as __version__) adds no layering edge
            ok = deferred
        else:
            ok = to in ALLOWED[layer]
        if not ok:
            bad.append(f"{where}:{lineno}: {layer} imports {target} (allowed: {sorted(ALLOWED.get(layer, []))})")
    return bad


# ---- the package as it stands ----


def _files():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_walk_sees_the_package():
    layers = {_layer(_module_name(p)[0]) for p in _files()}
    assert {"types", "config", "diffusion", "models", ROOT} <= layers  # pipeline / cli may not exist yet


def test_import_direction():
    bad = [msg for path in _files() for msg in violations(path, path.read_text())]
    assert not bad, "imports against DESIGN.md's direction:\n" + "\n".join(bad)


# ---- the checker itself can fail ----


@pytest.mark.parametrize(
    "file,source",
    [
        ("diffusion/samplers.py", "from ..training import trainer\n"),
        ("diffusion/samplers.py", "from ..models.unet import SpaceTimeUNet\n"),
        ("diffusion/__init__.py", "from ..data import datasets\n"),
        ("models/unet.py", "import kinema.diffusion.schedules\n"),
        ("models/unet.py", "from kinema import diffusion\n"),
        ("evaluation/fvd.py", "from kinema.training.ema import EMA\n"),
        ("pipeline.py", "from .training.checkpoint import load\n"),
        ("types.py", "from .config import Config\n"),
        ("config.py", "from kinema.types import Prediction\n"),
        ("training/trainer.py", "from ..cli import main\n"),
        ("__init__.py", "from .cli import main\n"),
        ("data/datasets.py", "import kinema\n"),
        ("data/datasets.py", "def f():\n    from ..diffusion import make_schedule\n"),
        ("utils.py", "import torch\n"),
    ],
)
def test_checker_flags_forbidden_imports(file, source):
    assert violations(PACKAGE / file, source), f"{file}: {source!r} should be flagged"


@pytest.mark.parametrize(
    "file,source",
    [
        ("diffusion/samplers.py", "from ..types import Prediction\nfrom .process import q_sample\n"),
        ("diffusion/__init__.py", "from .samplers import SAMPLERS\nfrom . import schedules\n"),
        ("models/unet.py", "from ..config import UNetConfig\nimport torch\n"),
        ("data/__init__.py", "from kinema.data.datasets import MovingDigits\n"),
        ("training/trainer.py", "from ..diffusion import training_loss\nfrom kinema.models import SpaceTimeUNet\n"),
        ("pipeline.py", "from .diffusion import generate\nfrom . import models\n"),
        ("cli.py", "from .pipeline import VideoPipeline\nfrom .training.trainer import Trainer\n"),
        ("__init__.py", "from .pipeline import VideoPipeline\n"),
        ("models/model_dir.py", "def version():\n    import kinema\n    return kinema.__version__\n"),
    ],
)
def test_checker_allows_designed_imports(file, source):
    assert violations(PACKAGE / file, source) == []
