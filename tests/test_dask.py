"""cnngraph.dask on a real dask.distributed LocalCluster (two worker processes): the same
numbers as one process, weights sent once per worker, one compile per worker, and
`cnngraph run --dask`."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import cnngraph
import cnngraph.dask as cdask

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")

ROOT = pathlib.Path(__file__).resolve().parent.parent
LENET = ROOT / "specs" / "lenet5.yaml"


def test_without_a_client_the_message_says_how_to_start_one():
    """Runs before the module's cluster starts (tests run in file order)."""
    with pytest.raises(cnngraph.CnnGraphError, match=r"no Dask client: start one first, e\.g\. distributed\.Client"):
        cdask.predict(str(LENET), np.zeros((1, 1, 32, 32), np.float32))


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def local(x, chunk, weights):
    """The single-process answer with the same batches (threads=1, as on the workers)."""
    net = cnngraph.compile(LENET, threads=1, weights=weights)
    return np.concatenate([net(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def test_dask_array_matches_one_process_exactly(client):
    x = np.random.default_rng(0).standard_normal((40, 1, 32, 32)).astype(np.float32)
    w = cnngraph.weights.init(cnngraph.load(LENET), seed=3)
    y = cdask.predict(str(LENET), da.from_array(x, chunks=(5, 1, 32, 32)), weights=w)
    assert isinstance(y, da.Array) and y.shape == (40, 10) and y.chunks[0] == (5,) * 8
    np.testing.assert_array_equal(y.compute(), local(x, 5, w))
    np.testing.assert_array_equal(cdask.predict(str(LENET), x, weights=w, batch=8), local(x, 8, w))
    # many tasks, two workers: the weights arrived once per call and worker, the net compiled once per worker
    stats = client.run(lambda: dict(__import__("cnngraph.dask", fromlist=["STATS"]).STATS))
    assert len(stats) == 2
    assert all(s["compiles"] <= 1 for s in stats.values()), stats
    assert all(s["weights_received"] == 2 for s in stats.values()), stats  # two predict calls above


def test_dask_bag_of_image_paths(client, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (9, 32, 32), dtype=np.uint8)
    paths = []
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "bad.png").write_bytes(b"nope")
    records = cdask.predict(str(LENET), db.from_sequence([*paths, str(tmp_path / "bad.png")], npartitions=3),
                            batch=4).compute()
    good = [r for r in records if "output" in r]
    assert [r["file"] for r in good] == paths
    assert [r["file"] for r in records if "error" in r] == [str(tmp_path / "bad.png")]
    want = cnngraph.reference(LENET, pixels[:, None].astype(np.float32) / 255)
    np.testing.assert_allclose(np.stack([r["output"] for r in good]), want, rtol=1e-4, atol=1e-5)


def test_cli_run_on_the_cluster_matches_the_local_run(client, tmp_path):
    x = np.random.default_rng(2).standard_normal((30, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    outs = {}
    for name, extra in (("local", ["--threads", "1"]), ("dask", ["--dask", client.scheduler.address])):
        p = subprocess.run([sys.executable, "-m", "cnngraph", "run", str(LENET), "-i", str(tmp_path / "x.npy"),
                            "--batch", "4", "-o", str(tmp_path / f"{name}.jsonl"), *extra], capture_output=True,
                           text=True, env=env, timeout=600, check=False)
        assert p.returncode == 0, p.stderr
        outs[name] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    assert [r["file"] for r in outs["dask"]] == [f"{tmp_path / 'x.npy'}[{i}]" for i in range(30)]
    assert outs["dask"] == outs["local"]  # the same numbers, exactly
