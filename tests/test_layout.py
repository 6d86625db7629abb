"""The package's shape, as DESIGN.md states it: subpackages by job whose imports point down, a
small root, small modules and short functions."""

from __future__ import annotations

import ast
from pathlib import Path

from netids.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "netids"
MAX_ROOT_MODULES = 8
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# what each subpackage may import of netids (the package root itself gives __version__)
MAY_IMPORT = {
    "detect": {"detect"},
    "capture": {"capture", "detect", "config"},
    "store": {"store", "detect", "capture", "config"},
    "training": {"training", "detect", "capture", "config", "__version__"},
    "lab": {"lab", "detect", "capture", "config"},
    "parallel": {"parallel"},
    "commands": {"commands", "detect", "capture", "store", "training", "lab", "parallel",
                 "config", "auth"},
    "ui": {"ui", "controller", "live", "config", "auth", "store"},
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def netids_imports(path: Path) -> list[str]:
    """The netids part each import of ``path`` reaches: 'detect', 'config', '__version__'..."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if module and module.split(".")[0] == "netids":
            parts = module.split(".")
            found += [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name.split(".")[1] for a in node.names if a.name.startswith("netids.")]
    return found


def test_every_subpackage_says_what_it_owns_and_imports_only_below_it() -> None:
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages == sorted(MAY_IMPORT)
    wrong = []
    for path in modules():
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            continue
        allowed = MAY_IMPORT[rel.parts[0]]
        wrong += [f"{rel} imports netids.{m}" for m in netids_imports(path) if m not in allowed]
        if rel.name == "__init__.py":
            assert ast.get_docstring(ast.parse(path.read_text())), f"{rel} has no docstring"
    assert wrong == []


def test_the_root_only_ties_the_packages_together() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_modules_and_functions_are_small() -> None:
    long_modules, long_functions = [], []
    for path in modules():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name} {n} lines")
    assert long_modules == []
    assert long_functions == []
