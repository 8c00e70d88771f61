"""The digits example end to end with real data shipped by a package (scikit-learn's handwritten
digits): trained with PyTorch, run by cnngraph from its state_dict, in Python and from PNG files
through `cnngraph run`: the same prediction for every test image, the same accuracy."""

import json
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ex = runpy.run_path(str(EXAMPLE / "train.py"), run_name="digits_example")
    net, x_test, y_test = ex["train"](epochs=20, seed=0)
    out = tmp_path_factory.mktemp("digits")
    import torch
    torch.save(net.state_dict(), out / "digits.pt")
    return ex, net, x_test, y_test, out


def test_same_predictions_and_accuracy_as_pytorch_image_for_image(trained):
    ex, net, x_test, y_test, out = trained
    r = ex["compare"](net, x_test, y_test, str(out / "digits.pt"))
    assert len(y_test) == 450
    assert r["torch_accuracy"] > 0.95  # a real model, not noise
    np.testing.assert_allclose(r["cnngraph"], r["torch"], rtol=1e-4, atol=1e-4)
    assert r["disagreements"] == 0
    np.testing.assert_array_equal(r["cnngraph"].argmax(1), r["torch"].argmax(1))
    assert r["cnngraph_accuracy"] == r["torch_accuracy"]


def test_cnngraph_run_on_the_pngs_gives_the_same_labels(trained):
    pytest.importorskip("PIL")
    ex, net, x_test, y_test, out = trained
    paths = ex["save_pngs"](x_test, y_test, out / "pngs")
    import torch
    with torch.no_grad():
        want = net(torch.from_numpy(x_test)).numpy().argmax(1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "cnngraph", "run", str(EXAMPLE / "digits.yaml"), "--input",
                        str(out / "pngs"), "--weights", str(out / "digits.pt"), "--labels",
                        str(EXAMPLE / "labels.txt"), "--top", "1", "-o", str(out / "pred.jsonl")],
                       capture_output=True, text=True, env=env, timeout=600, check=False)
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in (out / "pred.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [str(p) for p in paths]
    assert [int(r["top"][0]["label"]) for r in records] == want.tolist()
