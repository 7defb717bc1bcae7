"""The server runs ONNX Runtime only: it never imports torch nor the trainer package."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import trm_service
from trm_service.testing import ServerProcess

FORBIDDEN = ("torch", "trainer")
PACKAGE = Path(trm_service.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_module_of_the_package_imports_torch_or_the_trainer():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imported_roots(path) & set(FORBIDDEN))
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: roots for name, roots in offenders.items() if roots} == {}


def test_importing_every_module_loads_neither():
    modules = [m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="trm_service.")]
    script = (
        f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"
    assert "trm_service.server" in modules and "trm_service.scheduler.model_scheduler" in modules


def test_a_serving_process_has_no_torch_library_mapped(text_bundle: Path):
    with ServerProcess([text_bundle]) as server:
        maps = Path(f"/proc/{server.pid}/maps").read_text()
    assert "onnxruntime" in maps and "libtorch" not in maps
