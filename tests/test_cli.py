"""The command line: presentation of what the library computes, clean errors, exit codes."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import cnngraph
from cnngraph.cli import main

SPECS = pathlib.Path(__file__).resolve().parent.parent / "specs"


def cli(*args, cwd=None):
    """Run `python -m cnngraph ARGS` in a fresh process (as a user would)."""
    p = subprocess.run([sys.executable, "-m", "cnngraph", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_compile_json_is_one_document():
    code, out, err = cli("compile", SPECS / "lenet5.yaml", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["name"] == "lenet5" and doc["input_shape"] == [1, 32, 32]
    assert doc["totals"]["params"] == 61706 and doc["totals"]["macs"] == 416520
    assert [layer["name"] for layer in doc["layers"]][:2] == ["conv1", "relu1"]
    comp = doc["compile"]
    assert comp["kernels"][0] == {"name": "fused_conv2d_relu_maxpool2d", "count": 1, "layout": False,
                                  "steps": [["conv1", "relu1", "maxpool1"]]}
    assert comp["smoke"]["ok"] and comp["smoke"]["max_rel_error"] < 1e-4 and comp["seconds"] > 0


def test_compile_text_lists_kernels_time_and_smoke_run(tmp_path):
    ll, asm = tmp_path / "net.ll", tmp_path / "net.s"
    code, out, err = cli("compile", SPECS / "lenet5.yaml", "--emit-llvm", ll, "--emit-asm", asm)
    assert code == 0, err
    assert re.search(r"^compiled 6 distinct kernels for 6 steps in \d+\.\d+ s \((cold|from the cache)\), \w+, \d thread\(s\):$", out, re.MULTILINE)
    assert re.search(r"^  fused_conv2d_relu_maxpool2d_1 +conv2, relu2, maxpool2$", out, re.MULTILINE)
    assert re.search(r"^smoke run: batch 2, max relative error vs reference \S+ \(ok\)$", out, re.MULTILINE)
    assert re.search(r'define void @"fused_conv2d_relu_maxpool2d_[0-9a-f]{12}"\(', ll.read_text())
    assert re.search(r"^fused_linear_relu_[0-9a-f]{12}:", asm.read_text(), re.MULTILINE)
    assert "zmm" in asm.read_text()  # 512-bit vectors


def test_debug_levels_print_plan_and_ir_on_stderr():
    env = {**os.environ, "DEBUG": "3"}
    p = subprocess.run([sys.executable, "-m", "cnngraph", "compile", str(SPECS / "lenet5.yaml")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "=== DEBUG 1: report ===" in p.stderr
    assert re.search(r"=== DEBUG 2: fusion plan ===\n +0 fused_conv2d_relu_maxpool2d +conv1, relu1, maxpool1", p.stderr)
    assert "=== DEBUG 3: LLVM IR ===" in p.stderr and "=== DEBUG 4" not in p.stderr


def test_compile_writes_dot(tmp_path, capsys):
    dot = tmp_path / "g.dot"
    assert main(["compile", "--no-compile", str(SPECS / "lenet5.yaml"), "--dot", str(dot)]) == 0
    text = dot.read_text()
    assert text.startswith('digraph "lenet5"') and text.count("->") == 12
    assert '"conv1" [label="conv1\\nconv2d\\n6x28x28"]' in text
    assert "fc3" in capsys.readouterr().out


def test_run_reference_matches_library(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli("run", SPECS / "lenet5.yaml", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
                         "--seed", "7", "--reference")
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, cnngraph.reference(SPECS / "lenet5.yaml", x, seed=7))


@pytest.mark.parametrize("args, message", [
    (["compile", "no/such.yaml"], "error: no such file: no/such.yaml"),
    (["run", "SPEC", "--input", "missing.npy", "-o", "y.npy"], "error: cannot read input missing.npy"),
    (["run", "SPEC", "--input", "BADX", "-o", "y.npy"],
     r"error: expected an input of shape \(N, 1, 32, 32\), got \(2, 3\)"),
    (["run", "SPEC", "--input", "X", "--weights", "w.npz", "-o", "y.npy"], "error: no such weights file: w.npz"),
])
def test_user_mistakes_exit_1_without_traceback(tmp_path, args, message):
    np.save(tmp_path / "bad.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    subst = {"SPEC": str(SPECS / "lenet5.yaml"), "BADX": str(tmp_path / "bad.npy"), "X": str(tmp_path / "x.npy")}
    code, out, err = cli(*[subst.get(a, a) for a in args], cwd=tmp_path)
    assert code == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_run_native_matches_reference(tmp_path):
    x = np.random.default_rng(1).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = cli("run", SPECS / "lenet5.yaml", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), cnngraph.reference(SPECS / "lenet5.yaml", x),
                               rtol=1e-4, atol=1e-5)
