"""One epoch on a large generated set, streamed from disk: wall time and peak memory.

Writes ``--n`` 64 px noise PNGs (real and fake, 90 % train, 10 % val) to a temp folder, then trains
one full epoch of Xception block1 (fp32, batch 32) in a child process with streaming forced by a
low ``PATCHFORENSICS_STREAM_BYTES``, and prints the seconds of each phase and the child's peak RSS
(``getrusage(RUSAGE_CHILDREN)``, its DataLoader workers included). ``tests/test_scale.py`` runs the
same with 20,000 images and asserts the memory bound; the times are reported from here.

    .venv/bin/python benchmarks/bench_stream.py --n 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = """
import sys, time
from patchforensics.train import train
from patchforensics.train_config import TrainConfig
t = time.perf_counter()
res = train(TrainConfig(arch="xception", depth="block1", epochs=1, batch_size={batch}),
            sys.argv[1], sys.argv[2], sys.argv[3], device="cpu", progress=False)
print(f"trained {{len(res.history)}} epoch(s), {{int(res.history['steps'].iloc[-1])}} steps, "
      f"val patch acc {{res.best['patch_acc']:.3f}} in {{time.perf_counter() - t:.1f}} s")
"""


def write_set(root: Path, n: int, side: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """``n`` noise images, half real half fake, 90 % train / 10 % val: ``(real, fake)``.
    Blocky 16 x 16 noise upsampled (NEAREST) keeps the PNGs small and fast to write."""
    rng = np.random.default_rng(seed)
    per_class = n // 2
    n_val = per_class // 10
    for kind, offset in (("real", 0), ("fake", 40)):
        for i in range(per_class):
            split = "val" if i < n_val else "train"
            folder = root / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(offset, 216 + offset, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST).save(
                folder / f"{i:06d}.png", compress_level=1)
    return root / "real", root / "fake"


def run_epoch(real: Path, fake: Path, out: Path, *, stream_bytes: int = 1_000_000,
              batch: int = 32, timeout: float = 3600) -> tuple[subprocess.CompletedProcess, int]:
    """Train one epoch in a child process; returns it and the peak RSS in KiB of the children
    waited for so far (Linux ``ru_maxrss``)."""
    env = {**os.environ, "PATCHFORENSICS_STREAM_BYTES": str(stream_bytes),
           "PATCHFORENSICS_DATA": str(out / "data")}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(batch=batch), str(real), str(fake),
                           str(out / "run")], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return proc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="images in all")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        real, fake = write_set(Path(tmp), args.n)
        print(f"wrote {args.n} PNGs in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        proc, kib = run_epoch(real, fake, Path(tmp))
        print(proc.stdout.strip() or proc.stderr[-2000:])
        print(f"child: {time.perf_counter() - t:.1f} s wall, peak RSS {kib / 1024:.0f} MiB")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
