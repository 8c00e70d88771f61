"""The pipeline's direction, checked: nothing below the package facade imports it (turning paths,
YAML and ONNX files into graphs is the facade's job; the compiler takes a Graph), and the compiler
never dispatches on a layer kind's name."""

from __future__ import annotations

import ast
import pathlib

import pytest

from cnngraph.layers import REGISTRY

PKG = pathlib.Path(__file__).resolve().parent.parent / "cnngraph"
FACADE = {"load", "compile", "reference", "onnx_weights", "export", "prepare", "specs", "register_loader"}
APPLICATIONS = ("cli", "dask.py")  # built on the facade, like a user's code


def _modules():
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG)
        if rel.parts[0] in APPLICATIONS or rel == pathlib.Path("__init__.py"):
            continue
        yield rel, ast.parse(f.read_text())


@pytest.mark.parametrize("rel,tree", list(_modules()), ids=lambda v: str(v) if isinstance(v, pathlib.Path) else "")
def test_no_module_below_the_facade_imports_it(rel, tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            to_facade = (node.level == len(rel.parts) and node.module is None) or \
                (node.level == 0 and node.module == "cnngraph")
            assert not (to_facade and FACADE & {a.name for a in node.names}), \
                f"{rel}:{node.lineno} imports the facade ({', '.join(a.name for a in node.names)})"
        if isinstance(node, ast.Import):
            assert all(a.name != "cnngraph" for a in node.names), f"{rel}:{node.lineno} imports the facade"


def test_the_compiler_never_dispatches_on_a_layer_kind():
    """No comparison in the compiler involves a layer kind's name (kernel names may read like one)."""
    kinds = set(REGISTRY)
    for f in sorted((PKG / "compiler").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    assert part.value not in kinds, \
                        f"compiler/{f.name}:{node.lineno} compares with the layer kind {part.value!r}"
