"""Scale (issue 15, point 9): streamed splits give the very batches of in-memory ones, file hashes
are cached on disk and never trusted stale, a 20,000-image epoch stays small in memory, the
original authors' checkpoints load, and two result folders compare."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from patchforensics import data, images
from patchforensics.data import ImageFiles, iter_batches
from patchforensics.images import sha256_cached, sha256_file, sha256_files
from patchforensics.train import SPLITS, TrainConfig, stream_splits, train

from conftest import write_planted

REPO = Path(__file__).resolve().parents[1]


# --- streaming ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paired_sets(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Small real, fake and inversion sets (inversions named like the reals)."""
    base = tmp_path_factory.mktemp("paired")
    real = write_planted(base / "real", 0, 0, n_train=20, n_val=6)
    fake = write_planted(base / "fake", 50_000, 10, n_train=14, n_val=6)
    inv = write_planted(base / "inv", 90_000, 6, n_train=20, n_val=6)
    return real, fake, inv


def test_a_streamed_run_equals_the_in_memory_run(paired_sets, tmp_path, monkeypatch, one_thread):
    real, fake, inv = paired_sets
    monkeypatch.setenv(data.WORKERS_ENV, "1")  # a real worker process, not the main one
    # Inversions, blur + JPEG and crops: every random draw of a step must carry over.
    cfg = TrainConfig(arch="xception", depth="block1", epochs=2, patience=5, batch_size=8,
                      setting="samples_inversions", augment=0.5, crop=24,
                      stop_at_perfect=False)
    runs = {}
    for stream in (False, True):
        runs[stream] = train(cfg, real, fake, tmp_path / f"stream{stream}", device="cpu",
                             progress=False, inversions_dir=inv, stream=stream)
    done = {s: json.loads((tmp_path / f"stream{s}" / "done.json").read_text())
            for s in (False, True)}
    assert done[False]["streamed"] == [] and done[True]["streamed"] == ["train", "val"]
    cols = [c for c in runs[False].history.columns if c != "seconds"]
    assert len(runs[True].history) == 2
    assert runs[True].history[cols].equals(runs[False].history[cols])
    a, b = (torch.load(tmp_path / f"stream{s}" / "best.pt", weights_only=True)["model"]
            for s in (False, True))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert done[True]["steps"] == 2 * 5  # an epoch = a pass over 20 reals, 4 per step


def test_streaming_is_chosen_by_decoded_size(paired_sets, monkeypatch):
    real, fake, _ = paired_sets
    files = {k: {s: sorted((folder / s).glob("*.png")) for s in SPLITS}
             for k, folder in (("real", real), ("fake", fake))}
    monkeypatch.delenv(data.STREAM_ENV, raising=False)
    assert stream_splits(files) == {"train": False, "val": False}  # a few KiB < 2 GiB
    # train: (20 + 14) x 32 x 32 x 3 = 104,448 bytes; val: 12 x 3,072 = 36,864 bytes
    monkeypatch.setenv(data.STREAM_ENV, "50000")
    assert stream_splits(files) == {"train": True, "val": False}
    assert stream_splits(files, stream=False) == {"train": False, "val": False}
    monkeypatch.setenv(data.STREAM_ENV, "lots")
    with pytest.raises(ValueError, match="PATCHFORENSICS_STREAM_BYTES"):
        stream_splits(files)


def test_streamed_images_are_validated_and_batched_like_the_tensor(tmp_path, monkeypatch):
    folder = write_planted(tmp_path / "set", 0, 0, n_train=7, n_val=0)
    files = sorted((folder / "train").glob("*.png"), key=lambda p: int(p.stem))
    tensor = torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in files]))
    tensor = tensor.permute(0, 3, 1, 2)
    ds = ImageFiles(files)
    assert ds.shape == (7, 3, 32, 32) and torch.equal(ds[3], tensor[3])
    for workers in (0, 1):
        got = list(iter_batches(ds, 3, workers=workers))
        assert [len(b) for b in got] == [3, 3, 1]
        assert torch.equal(torch.cat(got), tensor)
    # A file of another size is named when the set is opened ...
    Image.new("RGB", (40, 40)).save(folder / "train" / "odd.png")
    with pytest.raises(ValueError, match=r"odd\.png: is 40x40 but 0\.png is 32x32"):
        ImageFiles([*files, folder / "train" / "odd.png"])
    # ... a truncated one when a worker decodes it: one line naming it, no worker traceback.
    bad = folder / "train" / "5.png"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError) as err:
        list(iter_batches(ImageFiles(files), 3, workers=1))
    assert str(err.value).startswith(f"{bad}: ") and "\n" not in str(err.value)


# --- cached file hashes ---------------------------------------------------------------------------

@pytest.fixture()
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PATCHFORENSICS_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(images.HASH_CACHE_ENV, raising=False)
    return tmp_path


def test_a_cached_hash_is_not_read_again_and_never_stale(cache_home, monkeypatch):
    f = cache_home / "a.bin"
    f.write_bytes(b"one" * 1000)
    truth = sha256_file(f)
    # A file hashed in the tick it was written gets no entry ("racy"): a same-size rewrite in
    # that tick would keep size and timestamps, so only its bytes can tell.
    assert sha256_cached(f) == truth
    f.write_bytes(b"two" * 1000)
    assert sha256_cached(f) == sha256_file(f) != truth
    # Hashed long enough after its last change, it is recorded ...
    monkeypatch.setattr(images, "_clock", lambda: os.stat(f).st_ctime_ns + 10 * 10**9)
    expected = sha256_file(f)
    assert sha256_cached(f) == expected
    assert (cache_home / "data" / "cache" / images.HASH_CACHE_NAME).is_file()
    # ... and a second call (this process or another: it is on disk) reads nothing.
    reads = []
    real = images.sha256_file
    monkeypatch.setattr(images, "sha256_file", lambda p: reads.append(p) or real(p))
    assert sha256_files([f, f]) == [expected, expected] and reads == []
    # Changed bytes (same size, mtime put back as rsync -t would) are hashed again.
    st = os.stat(f)
    f.write_bytes(b"six" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_cached(f) == real(f) != expected and len(reads) == 1
    with pytest.raises(FileNotFoundError, match="nope.bin: no such file"):
        sha256_cached(cache_home / "nope.bin")


def test_an_unusable_hash_cache_is_skipped_not_trusted(cache_home, monkeypatch):
    f = cache_home / "b.bin"
    f.write_bytes(b"x" * 100)
    (cache_home / "data" / "cache").mkdir(parents=True)
    (cache_home / "data" / "cache" / images.HASH_CACHE_NAME).write_text("not a database")
    monkeypatch.setattr(images, "_cache_warned", False)
    with pytest.warns(UserWarning, match="hash cache unusable"):
        assert sha256_cached(f) == sha256_file(f)
    monkeypatch.setenv(images.HASH_CACHE_ENV, "0")
    assert sha256_cached(f) == sha256_file(f)
