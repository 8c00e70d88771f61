"""The model zoo as a user meets it: every convolutional model of torchvision's classification,
segmentation and video families (the transformers left out), built with random weights and
randomised batchnorm statistics, exported by `torch.onnx.export` at opset 17, imported by
cnngraph, compiled, and compared with ONNX Runtime on the same model.

    python tools/zoo.py                          # every model
    python tools/zoo.py resnet18 efficientnet_b0 # some
    python tools/zoo.py --family segmentation --json zoo.json
    python tools/zoo.py --max-params 100e6          # skip the largest (regnet_y_128gf: 644M, ~10 GB at peak)

Prints one line per model: ok (with the largest relative difference from ONNX Runtime), or
refused (the importer's one-line reason, naming the node and operator), or a mismatch, or an
error (or skipped, over --max-params). A model is ok when it matches within 1e-4 of the output's scale.

torchvision 0.28 beside the CPU build of torch 2.13 needs its `nms` schemas defined before it
imports (the models never call them): `import_torchvision()` does that.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOL = 1e-4
EXCLUDED = ("vit_", "swin", "maxvit", "mvit", "swin3d")  # transformers
INPUTS = {"inception_v3": (3, 299, 299), "s3d": (3, 16, 224, 224)}  # s3d's last pool is a 2x7x7 window
FAMILY_INPUT = {"classification": (3, 224, 224), "segmentation": (3, 224, 224), "video": (3, 8, 112, 112)}


def import_torchvision():
    """torchvision, importable beside the CPU build of torch (its nms schemas defined first)."""
    import torch
    try:
        import torchvision
        return torchvision
    except (RuntimeError, ImportError) as e:
        if "nms" not in str(e):
            raise
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import_torchvision.lib = lib  # keep the definitions alive
    for name in [m for m in sys.modules if m.startswith("torchvision")]:
        del sys.modules[name]
    import torchvision
    return torchvision


def families(tv) -> dict[str, list[str]]:
    m = tv.models
    out = {"classification": m.list_models(module=m), "segmentation": m.list_models(module=m.segmentation),
           "video": m.list_models(module=m.video)}
    return {f: sorted(n for n in names if not n.startswith(EXCLUDED)) for f, names in out.items()}


def build(tv, name: str, family: str, seed: int = 0):
    """The model with random weights and batchnorm statistics that are not the identity, in eval mode."""
    import torch
    torch.manual_seed(seed)
    kwargs = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    if family == "segmentation":
        kwargs["weights_backbone"] = None
        kwargs["aux_loss"] = False
    model = tv.models.get_model(name, **kwargs).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
                if mod.affine:
                    mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.2)
    return model


def export(model, shape, path, opset: int = 17):
    import torch

    class Wrapped(torch.nn.Module):  # segmentation models return a dict: keep the main output
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            y = self.m(x)
            return y["out"] if isinstance(y, dict) else y

    x = torch.randn(1, *shape)
    torch.onnx.export(Wrapped(model), (x,), path, dynamo=False, opset_version=opset, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


def run_one(tv, name: str, family: str, shape=None, max_params=None) -> dict:
    """Build, export, import, compile and check one model (shape: its input without the batch)."""
    shape = shape or INPUTS.get(name, FAMILY_INPUT[family])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.onnx")
        model = build(tv, name, family)
        n = sum(p.numel() for p in model.parameters())
        if max_params is not None and n > max_params:
            return {"status": "skipped", "why": f"{n:,} parameters, more than --max-params {max_params:,.0f}"}
        export(model, shape, path)
        del model
        return check(path)


def check(path, batch: int = 2, seed: int = 0) -> dict:
    """Import, compile and compare one exported model with ONNX Runtime."""
    import cnngraph
    from cnngraph.interop import InteropError, import_onnx
    from cnngraph.interop.runtime import session
    t0 = time.perf_counter()
    try:
        imported = import_onnx(path)
    except InteropError as e:
        return {"status": "refused", "why": str(e)}
    t1 = time.perf_counter()
    g = cnngraph.load(imported.spec)
    net = cnngraph.compile(g, weights=imported.weights)
    t2 = time.perf_counter()
    x = np.random.default_rng(seed).standard_normal((batch, *g.input_shape)).astype(np.float32)
    sess = session(path, 2)
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = net(x)
    err = float(np.abs(got.astype(np.float64) - want).max() / max(float(np.abs(want).max()), 1e-6))
    return {"status": "ok" if err <= TOL else "mismatch", "err": err, "layers": len(g.nodes),
            "import_s": t1 - t0, "compile_s": t2 - t1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Import, compile and check torchvision's convolutional models.")
    ap.add_argument("models", nargs="*", help="model names (default: all of the chosen families)")
    ap.add_argument("--family", action="append", choices=tuple(FAMILY_INPUT), help="families (default: all)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--max-params", type=float, metavar="N", help="skip models with more parameters than N")
    args = ap.parse_args(argv)
    tv = import_torchvision()
    fams = families(tv)
    chosen = [(f, n) for f in (args.family or fams) for n in fams[f] if not args.models or n in args.models]
    results = {}
    for family, name in chosen:
        try:
            r = run_one(tv, name, family, max_params=args.max_params)
        except Exception as e:  # a crash of ours or of the exporter, recorded and reported
            r = {"status": "error", "why": f"{type(e).__name__}: {e}".splitlines()[0],
                 "trace": traceback.format_exc(limit=3)}
        results[name] = {"family": family, **r}
        detail = f"{r['err']:.1e}" if "err" in r else r.get("why", "")
        print(f"{name:32s} {family:15s} {r['status']:9s} {detail}", flush=True)
    counts = {s: sum(r["status"] == s for r in results.values())
              for s in ("ok", "refused", "mismatch", "error", "skipped")}
    print(f"\n{len(results)} models: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if counts["mismatch"] == counts["error"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
