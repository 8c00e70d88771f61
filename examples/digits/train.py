"""Train a small CNN on scikit-learn's handwritten digits with PyTorch, then run the trained
weights through cnngraph and check that it predicts the same digit for every test image.

    pip install torch scikit-learn pillow
    python examples/digits/train.py --out digits.pt --pngs digits_test/
    cnngraph run examples/digits/digits.yaml --input digits_test/ --weights digits.pt \\
        --labels examples/digits/labels.txt --top 1 -o predictions.jsonl

The network is `digits.yaml` beside this file; the PyTorch module below uses the same layer
names, so its `state_dict` is cnngraph's weights as it is. The test images saved with
`--pngs` hold the raw pixel values 0..16, which the spec's `preprocess: {scale: 16}` turns
into exactly what the training saw.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE / "digits.yaml"


def dataset(seed: int = 0):
    """(x_train, x_test, y_train, y_test): float32 (N, 1, 8, 8) in [0, 1] and int64 labels; 25% held out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, digits.target.astype(np.int64), test_size=0.25, random_state=seed,
                            stratify=digits.target)


def model():
    """The PyTorch twin of digits.yaml (same layer names, same order of operations)."""
    import torch
    from torch import nn

    class Digits(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.fc1 = nn.Linear(32 * 2 * 2, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    return Digits()


def train(epochs: int = 20, seed: int = 0):
    """Train with Adam on the training split; returns (model, x_test, y_test)."""
    import torch
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny batches: more threads only add overhead
    x_train, x_test, y_train, y_test = dataset(seed)
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    net.eval()
    return net, x_test, y_test


def compare(net, x_test, y_test, weights) -> dict:
    """PyTorch and cnngraph on every test image: outputs, predictions, accuracies."""
    import torch

    import cnngraph
    with torch.no_grad():
        want = net(torch.from_numpy(x_test)).numpy()
    compiled = cnngraph.compile(SPEC, weights=weights)
    got = compiled(x_test)
    return {"torch": want, "cnngraph": got,
            "torch_accuracy": float(np.mean(want.argmax(1) == y_test)),
            "cnngraph_accuracy": float(np.mean(got.argmax(1) == y_test)),
            "disagreements": int(np.sum(want.argmax(1) != got.argmax(1))),
            "max_abs_difference": float(np.abs(want - got).max())}


def save_pngs(x_test, y_test, folder: pathlib.Path) -> list[pathlib.Path]:
    """The test images as 8-bit PNGs holding the raw values 0..16 (named index_label.png)."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (img, label) in enumerate(zip(x_test, y_test)):
        path = folder / f"{i:04d}_{label}.png"
        Image.fromarray(np.round(img[0] * 16).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="digits.pt", help="where to save the state_dict (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pngs", metavar="DIR", help="also save the test images as PNGs there")
    args = ap.parse_args(argv)
    import torch
    net, x_test, y_test = train(args.epochs, args.seed)
    torch.save(net.state_dict(), args.out)
    r = compare(net, x_test, y_test, args.out)
    print(f"{len(y_test)} test images: PyTorch accuracy {r['torch_accuracy']:.4f}, cnngraph accuracy "
          f"{r['cnngraph_accuracy']:.4f}, {r['disagreements']} different predictions, largest output difference "
          f"{r['max_abs_difference']:.1e}; weights in {args.out}")
    if args.pngs:
        save_pngs(x_test, y_test, pathlib.Path(args.pngs))
        print(f"test images in {args.pngs}/ (cnngraph run {SPEC} --input {args.pngs} --weights {args.out} "
              f"--labels {HERE / 'labels.txt'} --top 1 -o predictions.jsonl)")
    return 0 if r["disagreements"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
