"""The package's layers: data → training → inference → evaluation → serve → cli, imports only downward.

Every ``import`` and ``from … import`` of an emovision module, at the top of a file or inside a
function, is read from the source (``ast``): a module may import the shared modules
(``errors``, ``files``, ``system``, ``progress``, ``plots``, ``tables``), its own subpackage and the
subpackages below it; the shared modules import only each other. And no function in ``src/`` is
over 60 lines, no class over 250 (methods and nested functions counted on their own).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emovision"
LAYERS = ["data", "training", "inference", "evaluation", "serve", "cli"]
SHARED = {"errors", "files", "system", "progress", "plots", "tables", "__init__", "__main__"}


def _part(path: Path) -> str:
    """The subpackage a file belongs to, or its module name for a shared top-level module."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, first name after emovision.)`` for every emovision import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "emovision":
                continue
            if len(parts) > 1:
                found.append((node.lineno, parts[1]))
            else:
                found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name.split(".")[1])
                for alias in node.names
                if alias.name.startswith("emovision.")
            ]
    return found


def _allowed(importer: str, imported: str) -> bool:
    if imported in SHARED or imported == "__version__":
        return True
    if importer in SHARED:  # entry points: the lazy Recognizer export and python -m emovision
        return (importer, imported) in (("__init__", "inference"), ("__main__", "cli"))
    if imported not in LAYERS:
        return False
    return LAYERS.index(imported) <= LAYERS.index(importer)


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_layer_or_is_shared():
    parts = {_part(path) for path in FILES}
    assert parts <= set(LAYERS) | SHARED, parts - set(LAYERS) - SHARED


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_only_downward(path):
    importer = _part(path)
    upward = [f"line {line}: {name}" for line, name in _imports(path) if not _allowed(importer, name)]
    assert not upward, f"{path.relative_to(PACKAGE)} ({importer}) imports upward: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from emovision.evaluation.report import load_run\n")
    assert _imports(sample) == [(2, "evaluation")]
    assert not _allowed("training", "evaluation") and _allowed("evaluation", "training")
    assert not _allowed("errors", "data") and _allowed("cli", "evaluation")


MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 250


def _sizes(text: str, relative: str) -> dict[str, tuple[int, int]]:
    """``{"relative:name": (lines, limit)}`` of every function (methods and nested ones too) and class
    in ``text``."""
    sizes = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            key = f"{relative}:{node.name}"
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            sizes[key] = (node.end_lineno - node.lineno + 1, limit)
    return sizes


def _file_sizes(path: Path) -> dict[str, tuple[int, int]]:
    return _sizes(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_60_lines_and_no_class_over_250(path):
    oversized = [
        f"{key}: {lines} lines (at most {limit})"
        for key, (lines, limit) in _file_sizes(path).items()
        if lines > limit
    ]
    assert not oversized


def test_the_size_rule_counts_functions_methods_and_classes():
    long_body = "\n".join(f"        x{i} = {i}" for i in range(61))
    text = f"class _A:\n    def short(self):\n        return 1\n\n    def Long(self):\n{long_body}\n"
    assert _sizes(text, "m.py") == {"m.py:_A": (66, 250), "m.py:short": (2, 60), "m.py:Long": (62, 60)}
