"""`cnngraph run` on real files (issue 14): folders of images with a corrupt one, labels and
top-k, every output format, `.npy` shards and `.wav` audio, bounded memory over 10,000 inputs."""

import csv
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import wave

import numpy as np
import pytest

import cnngraph
from cnngraph import data
from cnngraph.cli import main

Image = pytest.importorskip("PIL.Image")

ROOT = pathlib.Path(__file__).resolve().parent.parent
LENET = ROOT / "specs" / "lenet5.yaml"


def grey_pngs(folder, n, seed=0, size=32):
    """n random 32x32 grey PNGs; returns their pixels as the net sees them (C, H, W) in [0, 1]."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / f"img{i:05d}.png")
    return pixels[:, None].astype(np.float32) / 255


def run(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "cnngraph", "run", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=600, check=False)
    return p.returncode, p.stdout, p.stderr


def test_folder_of_pngs_with_a_corrupt_one_top3_jsonl(tmp_path):
    x = grey_pngs(tmp_path / "imgs", 7)
    (tmp_path / "imgs" / "img00003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt, in the middle
    (tmp_path / "imgs" / "notes.txt").write_text("not an image: not picked up from a folder")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"digit {i}\n" for i in range(10)))
    code, _, err = run(LENET, "--input", tmp_path / "imgs", "--labels", labels, "--top", 3,
                         "-o", tmp_path / "out.jsonl", "--batch", 2)
    assert code == 1, err
    lines = err.splitlines()
    assert lines[0].startswith(f"skipped {tmp_path / 'imgs' / 'img00003.png'}: cannot decode image:")
    assert lines[-2:] == [f"{tmp_path / 'out.jsonl'}: 6 records (1 input skipped)",
                          "error: 1 of 7 inputs could not be read (listed above)"]
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    keep = [0, 1, 2, 4, 5, 6]
    assert [r["file"] for r in records] == [str(tmp_path / "imgs" / f"img{i:05d}.png") for i in keep]
    want = cnngraph.reference(LENET, x[keep])
    for r, row in zip(records, want):
        order = np.argsort(-row, kind="stable")[:3]
        assert [t["index"] for t in r["top"]] == order.tolist()
        assert [t["label"] for t in r["top"]] == [f"digit {i}" for i in order]
        np.testing.assert_allclose([t["score"] for t in r["top"]], row[order], rtol=1e-4, atol=1e-5)


def test_raw_outputs_as_npy_csv_and_stdout(tmp_path):
    x = grey_pngs(tmp_path / "imgs", 5)
    want = cnngraph.reference(LENET, x)
    code, _, err = run(LENET, "-i", tmp_path / "imgs" / "*.png", "-o", tmp_path / "y.npy", "--batch", 3)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cnngraph-")]  # no temporary left behind
    code, _, err = run(LENET, "-i", tmp_path / "imgs", "-o", tmp_path / "y.csv", "--top", 2)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO((tmp_path / "y.csv").read_text())))
    assert rows[0] == ["file", "label_1", "score_1", "label_2", "score_2"] and len(rows) == 6
    assert [int(r[1]) for r in rows[1:]] == np.argmax(want, axis=1).tolist()
    code, out, err = run(LENET, "-i", tmp_path / "imgs" / "img00001.png", "-o", "-")
    assert code == 0, err
    (rec,) = [json.loads(line) for line in out.splitlines()]
    np.testing.assert_allclose(rec["output"], want[1], rtol=1e-4, atol=1e-5)
    assert err == "stdout: 1 record (0 inputs skipped)\n"


def test_npy_shards_stream_rows_and_bad_shards_are_skipped(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "one.npy", a[0, :, :, :])  # a single sample
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3), np.float32))
    code, out, err = run(LENET, "-i", tmp_path / "a.npy", "-i", tmp_path / "one.npy", "-i", tmp_path / "wrong.npy",
                         "--reference", "-o", "-", "--batch", 4)
    assert code == 1
    names = [json.loads(line)["file"] for line in out.splitlines()]
    assert names == [f"{tmp_path / 'a.npy'}[{i}]" for i in range(5)] + [str(tmp_path / "one.npy")]
    got = np.array([json.loads(line)["output"] for line in out.splitlines()], np.float32)
    np.testing.assert_allclose(got, cnngraph.reference(LENET, np.concatenate([a, a[:1]])), rtol=1e-5, atol=1e-6)
    assert f"skipped {tmp_path / 'wrong.npy'}: expected shape (1, 32, 32) or (N, 1, 32, 32), got (2, 3)" in err


def test_npy_whose_header_lies_is_refused_before_allocating(tmp_path):
    from numpy.lib import format as npy
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 1, 32, 32)})
    (tmp_path / "huge.npy").write_bytes(head.getvalue() + bytes(4096))  # claims 4 TB, holds 4 KiB
    with pytest.raises(cnngraph.InputError, match=r"huge\.npy: its header claims shape \(1000000000, 1, 32, 32\) "
                                                  r"of float32, 4,096,000,000,000 bytes, but the file holds 4,096 "
                                                  r"bytes of data"):
        data.open_npy(str(tmp_path / "huge.npy"))
    code, _, err = run(LENET, "-i", tmp_path / "huge.npy", "-o", tmp_path / "y.npy")
    assert code == 1 and "4,096,000,000,000 bytes" in err and "Traceback" not in err
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(cnngraph.InputError, match=r"expected numbers, got dtype object \(pickled objects are never "
                                                  r"loaded\)"):
        data.open_npy(str(tmp_path / "objects.npy"))


def write_wav(path, samples, rate=16000, width=2):
    scale = 2.0 ** (8 * width - 1)  # PCM full scale, as readers divide by it
    ints = np.clip(np.round(samples * scale), -scale, scale - 1).astype({1: np.int16, 2: "<i2", 4: "<i4"}[width])
    if width == 1:
        ints = (ints + 128).astype(np.uint8)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(samples.shape[0] if samples.ndim == 2 else 1)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes((ints.T if samples.ndim == 2 else ints).tobytes())


def test_wav_files_run_through_a_1d_net(tmp_path):
    rng = np.random.default_rng(1)
    clips = rng.uniform(-0.9, 0.9, (3, 16000))
    for i, c in enumerate(clips):
        write_wav(tmp_path / f"clip{i}.wav", c, width=(2, 4, 1)[i])
    write_wav(tmp_path / "short.wav", clips[0][:8000])
    spec = ROOT / "specs" / "audio1d.yaml"
    code, out, err = run(spec, "-i", tmp_path, "-o", "-", "--top", 1)
    assert code == 1 and f"skipped {tmp_path / 'short.wav'}: 8,000 samples, the net takes 16,000 — declare " \
                          f"'preprocess: {{fit: pad_or_crop}}'" in err
    g = cnngraph.load(spec)
    x = np.stack([cnngraph.prepare(g, tmp_path / f"clip{i}.wav") for i in range(3)])
    np.testing.assert_allclose(x[:, 0], clips, atol=1 / 120)  # 8-bit is the coarsest of the three
    want = np.argmax(cnngraph.reference(g, x), axis=1)
    assert [json.loads(line)["top"][0]["index"] for line in out.splitlines()] == want.tolist()


def test_memory_stays_flat_over_10000_inputs(tmp_path):
    """Peak memory of a run over 10,000 PNGs is that of a run over 1,000, give or take a few MiB."""
    grey_pngs(tmp_path / "many", 10_000, seed=7)
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((tmp_path / "many").iterdir())[:1000]:
        os.link(p, few / p.name)
    code = ("import resource, sys; from cnngraph.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    peaks = {}
    for name in ("few", "many"):
        p = subprocess.run([sys.executable, "-c", code, "run", str(LENET), "-i", str(tmp_path / name), "--top", "3",
                            "-o", str(tmp_path / f"{name}.jsonl"), "--batch", "64"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600, check=False)
        assert p.returncode == 0, p.stderr
        peaks[name] = int(p.stderr.splitlines()[-1]) / 1024  # MiB
    assert len((tmp_path / "many.jsonl").read_text().splitlines()) == 10_000
    assert peaks["many"] - peaks["few"] < 16, peaks


def test_batches_api_reports_failures_and_keeps_order(tmp_path):
    x = grey_pngs(tmp_path, 5)
    (tmp_path / "img00002.png").write_bytes(b"GIF89a?")
    paths = sorted(str(p) for p in tmp_path.glob("*.png"))
    got = list(data.batches(cnngraph.load(LENET), paths, batch=2))
    assert [b.names for b in got] == [[paths[0], paths[1]], [paths[3]], [paths[4]]]
    assert [len(b.failures) for b in got] == [0, 1, 0] and got[1].failures[0][0] == paths[2]
    np.testing.assert_array_equal(np.concatenate([b.x for b in got]), x[[0, 1, 3, 4]])


def test_expand_files_folders_globs(tmp_path):
    grey_pngs(tmp_path / "a" / "b", 2)
    (tmp_path / "a" / ".hidden").mkdir()
    grey_pngs(tmp_path / "a" / ".hidden", 1)
    assert data.expand([str(tmp_path / "a")]) == [str(tmp_path / "a" / "b" / f"img{i:05d}.png") for i in range(2)]
    assert data.expand([str(tmp_path / "a" / "**" / "*.png")]) == data.expand([str(tmp_path / "a")])
    with pytest.raises(cnngraph.InputError, match=r"nothing\*\.png: matches no file"):
        data.expand([str(tmp_path / "nothing*.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(cnngraph.InputError, match=r"empty: no images, \.wav or \.npy files in this folder"):
        data.expand([str(tmp_path / "empty")])


def test_labels_must_match_the_outputs(tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("a\nb\n\n")
    grey_pngs(tmp_path / "imgs", 1)
    assert main(["run", str(LENET), "-i", str(tmp_path / "imgs"), "--labels", str(tmp_path / "labels.txt")]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path / 'labels.txt'}: 2 labels, the net has 10 outputs — one "
                                       f"label per line, in output order\n")
    assert main(["run", "audio1d", "-i", str(tmp_path / "imgs"), "--top", "2", "-o", str(tmp_path / "o.jsonl")]) == 1
    assert "skipped" in capsys.readouterr().err


def test_progress_is_shown_on_a_terminal_only(tmp_path):
    """On a terminal (a pty here) stderr shows a progress bar; piped, it does not (see the other tests)."""
    import fcntl
    import pty
    import struct
    import termios
    grey_pngs(tmp_path / "imgs", 300)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}
    p = subprocess.Popen([sys.executable, "-m", "cnngraph", "run", str(LENET), "-i", str(tmp_path / "imgs"),
                          "-o", str(tmp_path / "o.jsonl"), "--batch", "8"], stdin=slave, stdout=slave, stderr=slave,
                         env=env, close_fds=True)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        seen += chunk
    assert p.wait(timeout=300) == 0
    os.close(master)
    text = seen.decode(errors="replace")
    assert re.search(r"lenet5: +\d+%\|.*\| \d+/300 \[.*input/s\]", text), text[-500:]
    assert text.rstrip().endswith("o.jsonl: 300 records (0 inputs skipped)")
