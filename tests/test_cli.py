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
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"


def cli(*args, cwd=None, env=None):
    """Run `python -m cnngraph ARGS` in a fresh process (as a user would), with this checkout's package."""
    root = str(SPECS.parent)
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "cnngraph", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=300, env=env, check=False)
    return p.returncode, p.stdout, p.stderr


def golden(name: str, text: str):
    """Compare with tests/golden/NAME; CNNGRAPH_REGEN=1 rewrites it on purpose."""
    path = GOLDEN / name
    if os.environ.get("CNNGRAPH_REGEN"):
        path.write_text(text)
    assert path.exists(), f"missing {path}: run with CNNGRAPH_REGEN=1 to create it"
    assert text == path.read_text(), f"{name} changed; if on purpose, regenerate with CNNGRAPH_REGEN=1"


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
    assert re.search(r"^compiled 6 distinct kernels for 6 steps in \d+(\.\d+)? (ms|s) \((cold: native code built "
                     r"and cached|native code from the cache)\), \w+, f32, \d threads?:$", out, re.MULTILINE)
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
    (["run", "SPEC", "--input", "missing.npy", "-o", "y.npy"], "error: no such file or folder: missing.npy"),
    (["run", "SPEC", "--input", "X", "-o", "y.txt"], r"error: expected an output ending in \.jsonl, \.csv or \.npy"),
    (["run", "SPEC", "--input", "X", "--labels", "X"], r"error: cannot read labels .*x\.npy: 'utf-8' codec"),
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


# ---- issue 12: a tool people enjoy -------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"cnngraph {cnngraph.__version__}\n"


def test_bundled_specs_listed_and_usable_by_name_from_any_folder(tmp_path, capsys):
    assert main(["specs"]) == 0
    golden("specs.txt", capsys.readouterr().out)
    code, out, err = cli("compile", "resnet50", "--no-compile", "--depth", "1", cwd=tmp_path)
    assert code == 0, err
    golden("resnet50-depth1.txt", out)
    code, out, err = cli("compile", "resnet5", "--no-compile", cwd=tmp_path)
    assert (code, err) == (1, "error: no such file: resnet5 — did you mean 'resnet50' (a bundled spec)?\n")


def test_depth_and_block_subtotals(capsys):
    assert main(["compile", "--no-compile", "--depth", "2", str(SPECS / "resnet18.yaml")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^layer2      basic x2 +128x28x28 +525,568 +411,041,792  99x99$", out, re.MULTILINE)
    assert re.search(r"^  layer2\.0  basic +128x28x28 +230,144 +179,830,784  67x67$", out, re.MULTILINE)
    assert "layer2.0.conv1" not in out
    assert re.search(r"^params: +11,689,512 trainable \(11\.69M\), 9,600 buffers", out, re.MULTILINE)


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], (r"argument --threads: expected an integer from 1 to 256 \(leave --threads out to use "
                          r"all \d+ cores\), got '0'")),
    (["--threads", "many"], r"argument --threads: expected an integer from 1 to 256 .*got 'many'"),
    (["--depth", "0"], r"argument --depth: expected a depth of at least 1, got '0'"),
])
def test_arguments_are_checked_in_cli_terms(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compile", "--no-compile", str(SPECS / "lenet5.yaml"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "None" not in err and "Traceback" not in err


def test_more_threads_than_cores_is_a_warning(capsys):
    n = (os.cpu_count() or 1) + 1
    assert main(["compile", "--no-compile", str(SPECS / "lenet5.yaml"), "--threads", str(n)]) == 0
    assert f"warning: --threads {n} is more than the {os.cpu_count()} cores here" in capsys.readouterr().err


def test_large_net_smoke_run_skips_the_slow_reference_unless_asked(tmp_path, capsys):
    spec = tmp_path / "wide.yaml"  # 604M MACs per sample: numpy would take about a second per sample
    spec.write_text("input: [64, 128, 128]\nlayers: [{conv: {out: 64, kernel: 3}}, relu]\n")
    assert main(["compile", str(spec)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^smoke run: batch 1 in \S+ \S+, output finite \(ok\); reference check skipped \(1\.\d+G MACs "
                     r"for a batch of 2, about \S+ \S+ of numpy; --check runs it\)$", out, re.MULTILINE)
    assert main(["compile", str(spec), "--check", "--json"]) == 0
    smoke = json.loads(capsys.readouterr().out)["compile"]["smoke"]
    assert smoke["reference"] and smoke["ok"] and smoke["max_rel_error"] < 1e-4


def test_warnings_for_a_batched_looking_input_and_unread_layers(tmp_path, capsys):
    spec = tmp_path / "net.yaml"
    spec.write_text("input: [1, 3, 32, 32]\noutput: a\nlayers:\n  - relu: {name: a}\n  - tanh\n  - sigmoid\n")
    assert main(["compile", "--no-compile", str(spec)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == [
        (f"warning: {spec}:1:8: input [1, 3, 32, 32] looks like it includes a batch size of 1 (PyTorch's N, C, ...): "
         f"cnngraph reads it as 1 channel of 3x32x32 — without a batch dim, write input: [3, 32, 32]"),
        (f"warning: {spec}:6:5: layer 'sigmoid1' (sigmoid): nothing reads this layer's output and it is not the "
         f"network output 'a': it does not affect the result (nor do the 1 layer(s) that only feed it) — remove it, "
         f"or name it in 'output'")]
    assert main(["compile", "--no-compile", "--strict", str(spec)]) == 1
    assert "— without a batch dim, write input: [3, 32, 32]; --strict makes this an error" in capsys.readouterr().err


def test_python_api_is_reachable_from_the_package_alone():
    code = ("import cnngraph; g = cnngraph.load('lenet5'); print(len(cnngraph.report.to_text(g)) > 0); "
            "print(sorted(n for n in dir(cnngraph) if not n.startswith('__')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(SPECS.parent)}, check=False)
    assert p.returncode == 0, p.stderr
    first, names = p.stdout.splitlines()
    assert first == "True"
    assert names == str(["CnnGraphError", "Graph", "InputError", "LayerError", "NetSpec", "SpecError", "SpecWarning",
                         "WeightsError", "compile", "dask", "data", "export", "fcview", "load", "onnx_weights",
                         "prepare", "preprocess", "reference", "register_loader", "report", "specs", "weights"])
    assert "os" not in dir(cnngraph) and "annotations" not in dir(cnngraph)


def test_short_reprs_summary_and_html():
    from cnngraph import report
    g = cnngraph.load(SPECS / "resnet50.yaml")
    assert report.graph_repr(g) == ("<Graph 'resnet50': input 3x224x224 -> output 1000, 175 layers, 25.56M params, "
                                    "4.089G MACs>")
    text = report.summary(g, depth=1)
    assert text.splitlines()[0] == "network resnet50: input 3x224x224, output 1000 ('fc'), 175 layers"
    assert len(text.splitlines()) == 21  # title, blank, header, rule, 11 rows, rule, 5 totals
    page = report.to_html(g, depth=1)
    assert page.count("<tr>") == 1 + 11 and "<b>layer3</b>" in page and "bottleneck x6" in page
    odd = report.to_html(cnngraph.load("input: [2]\nlayers: [{relu: {name: '<b>'}}]"))
    assert "<script" not in page and odd.count("&lt;b&gt;") == 2 and "'<b>'" not in odd  # the row and the headline


def test_the_wheel_carries_every_bundled_spec(tmp_path):
    """`pip install .` then `cnngraph compile resnet50` anywhere: the specs are package data."""
    import shutil
    import zipfile
    src = tmp_path / "src"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(SPECS.parent, src, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache*"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(src)], capture_output=True, text=True, timeout=300, check=False,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (wheel,) = tmp_path.glob("cnngraph-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"cnngraph/specs/{s.name}" for s in SPECS.glob("*.yaml")} <= names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert f"Version: {cnngraph.__version__}" in meta and "Requires-Dist: tqdm" in meta


def test_every_fcview_column_is_explained_in_the_help_and_the_docs(capsys):
    from cnngraph import fcview
    with pytest.raises(SystemExit):
        main(["fcview", "--help"])
    help_text = capsys.readouterr().out
    doc = (SPECS.parent / "docs" / "spec.md").read_text()
    for header, _, _ in fcview.COLUMNS:
        if header in ("layer", "op"):
            continue
        assert re.search(rf"^  {re.escape(header)}  ", help_text, re.MULTILINE), header
        assert f"| `{header}` |" in doc, header


def test_cache_info_and_clear(tmp_path, monkeypatch):
    env = {"CNNGRAPH_CACHE": str(tmp_path / "objs"), "CNNGRAPH_CACHE_MAX_BYTES": str(50 << 20)}
    code, out, err = cli("compile", SPECS / "lenet5.yaml", "--no-check", env=env)
    assert code == 0, err
    code, out, err = cli("cache", "info", env=env)
    assert code == 0, err
    m = re.match(r"^(.*objs): (\d+) compiled objects, ([\d.]+ KiB) of at most 50.0 MiB \(least recently used", out)
    assert m and m.group(1) == str(tmp_path / "objs") and int(m.group(2)) >= 6
    code, out, err = cli("cache", "clear", env=env)
    assert code == 0 and "removed the compiled objects" in out
    code, out, err = cli("cache", "info", env=env)
    assert out.startswith(f"{tmp_path / 'objs'}: 0 compiled objects, 0 B of at most 50.0 MiB")
