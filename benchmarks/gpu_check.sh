#!/usr/bin/env bash
# One prepared GPU check (issue 14), at most ~5 minutes on one GPU. Run from the repository root:
#
#   bash benchmarks/gpu_check.sh          # on a machine with CUDA: the real check
#   bash benchmarks/gpu_check.sh --cpu    # dry run of the same code on the CPU, tiny sizes
#   bash benchmarks/gpu_check.sh --no-series   # skip step 1 (a GPU machine without the
#                                              # notebook stack: papermill, mediapipe)
#
# What it does (everything in a temporary folder; data/, checkpoints/ and results/ untouched):
#  1. the smoke series on CUDA: `patchforensics reproduce --smoke --force` (skipped with --cpu);
#  2. a default-size generator training: the CelebA dcgan config (64 px, batch 32) for a few
#     hundred steps on CUDA in fp32 and in bf16 autocast, and the same fp32 steps on the CPU;
#     checks: the loss curves agree (mean D/G loss of the last steps within tolerance) and the
#     CUDA-trained G gives the same images on CPU and CUDA (max |diff| < 1e-3, TF32 off);
#  3. a default-size classifier training: xception block2, load_size 192, 3 epochs on CUDA and on
#     the CPU, reals vs the step-2 generator's samples; checks: val accuracies close, and one
#     forward of the CUDA weights on CPU and CUDA agrees to 1e-3;
#  4. prints the GPU's name (nvidia-smi) and every timing. Exit 0 only when every check passed.
# Without CUDA (and without --cpu) it stops at once with one clear line and exit status 3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODE=cuda
SERIES=1
for arg in "$@"; do
  case $arg in
    --cpu|--dry-run) MODE=cpu ;;
    --no-series) SERIES=0 ;;
    *) echo "gpu_check: unknown option $arg (--cpu, --no-series)" >&2; exit 2 ;;
  esac
done

if [[ $MODE == cuda ]]; then
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: FAILED: no CUDA device visible to torch (run with --cpu for the dry run)" >&2
    exit 3
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

SCRATCH=$(mktemp -d -t gpu_check_XXXX)
trap 'rm -rf "$SCRATCH"' EXIT
export PATCHFORENSICS_DATA="$SCRATCH/data" PATCHFORENSICS_CHECKPOINTS="$SCRATCH/checkpoints"
export PATCHFORENSICS_RESULTS="$SCRATCH/results"
mkdir -p "$PATCHFORENSICS_DATA" "$PATCHFORENSICS_CHECKPOINTS" "$PATCHFORENSICS_RESULTS"
[[ -d data/packages ]] && ln -s "$(pwd)/data/packages" "$PATCHFORENSICS_DATA/packages"

if [[ $MODE == cuda && $SERIES == 1 ]]; then
  t0=$(date +%s)
  "$PY" -m patchforensics.cli reproduce --smoke --force
  echo "gpu_check: smoke series on CUDA: $(( $(date +%s) - t0 )) s"
fi

MODE=$MODE "$PY" - <<'EOF'
"""Steps 2-4 of gpu_check.sh (see there). MODE=cpu: the same code, tiny, CPU on both sides."""
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from patchforensics import embedded, paths
from patchforensics.config import WorldConfig
from patchforensics.generators import default_config
from patchforensics.generators.gan import gan_training
from patchforensics.generators.training import data_channels, read_stack, train_files
from patchforensics.models import load_classifier
from patchforensics.train import TrainConfig, to_input, train

dry = os.environ["MODE"] == "cpu"
gpu = torch.device("cpu" if dry else "cuda")
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"gpu_check: {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def sync() -> None:
    if gpu.type == "cuda":
        torch.cuda.synchronize()


cfg_world = WorldConfig()
root = paths.world_dir(cfg_world.name)
embedded.build_real_world(cfg_world, progress=False)
images = read_stack(train_files(root, "celeba")[0])
channels = data_channels(images)

# --- 2. generator: dcgan default config, fp32 CUDA vs bf16 CUDA vs fp32 CPU ----------------
steps = 4 if dry else 300
base = default_config("celeba", "dcgan")
curves, nets, seconds = {}, {}, {}
for label, dev, precision in (("cuda_fp32", gpu, "fp32"), ("cuda_bf16", gpu, "bf16"),
                              ("cpu_fp32", torch.device("cpu"), "fp32")):
    cfg = replace(base, precision=precision, steps=steps)
    parts, _, step = gan_training(cfg, images, channels, dev)
    sync()
    t0 = time.perf_counter()
    logs = [step(i) for i in range(steps)]
    sync()
    seconds[label] = time.perf_counter() - t0
    curves[label] = {k: float(np.mean([float(r[k]) for r in logs[-steps // 4:]]))
                     for k in logs[0]}
    nets[label] = parts["G"]
    print(f"gpu_check: dcgan {steps} steps {label}: {seconds[label]:.1f} s "
          f"({seconds[label] / steps * 1000:.0f} ms/step), last-quarter losses {curves[label]}",
          flush=True)
for other in ("cuda_bf16", "cpu_fp32"):
    for k, v in curves["cuda_fp32"].items():
        # GAN losses wander; one scale: |diff| <= 0.35 + 25 % of the value
        check(abs(curves[other][k] - v) <= 0.35 + 0.25 * abs(v),
              f"dcgan loss {k}: {other} {curves[other][k]:.3f} vs cuda_fp32 {v:.3f}")
G = nets["cuda_fp32"].eval()
z = torch.randn(16, base.latent_dim, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    x_gpu = G(z.to(gpu)).float().cpu()
    x_cpu = G.to("cpu")(z).float()
diff = float((x_gpu - x_cpu).abs().max())
check(diff < 1e-3, f"dcgan forward CPU vs {gpu.type}: max |diff| {diff:.2e} < 1e-3")

# --- 3. classifier: xception block2, load_size 192, reals vs that dcgan's samples -----------
with torch.no_grad():
    G.eval()
    scratch = Path(tempfile.mkdtemp(prefix="fake_", dir=os.environ["PATCHFORENSICS_DATA"]))
    real_dir = root / "real" / "celeba"
    for split in ("train", "val"):
        n = len(list((real_dir / split).glob("*.png")))
        (scratch / split).mkdir(parents=True)
        zz = torch.randn(n, base.latent_dim, generator=torch.Generator().manual_seed(1))
        x = ((G(zz).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for i, img in enumerate(x):
            Image.fromarray(img).save(scratch / split / f"{i:05d}.png")
epochs = 1 if dry else 3
tcfg = TrainConfig(arch="xception", depth="block2", load_size=96 if dry else 192,
                   epochs=epochs, patience=epochs, stop_at_perfect=False,
                   steps_per_epoch=3 if dry else 0, limit=16 if dry else 0)
acc, models = {}, {}
for label, dev in (("cuda", gpu), ("cpu", torch.device("cpu"))):
    t0 = time.perf_counter()
    res = train(tcfg, real_dir, scratch, Path(tempfile.mkdtemp(dir=os.environ[
        "PATCHFORENSICS_CHECKPOINTS"])) / label, device=str(dev), progress=False, force=True)
    acc[label] = float(res.best["image_acc"])  # val accuracy of best.pt, mean patch softmax
    print(f"gpu_check: classifier {tcfg.run_name()} load {tcfg.load_size}, {epochs} epochs on "
          f"{label}: {time.perf_counter() - t0:.1f} s, best val {json.dumps(res.best)}",
          flush=True)
    models[label] = res.out_dir
check(abs(acc["cuda"] - acc["cpu"]) <= 0.05,
      f"classifier val accuracy cuda {acc['cuda']:.3f} vs cpu {acc['cpu']:.3f} (<= 0.05 apart)")
net = load_classifier(models["cuda"], device="cpu")
xb = to_input(torch.from_numpy(read_stack(sorted((real_dir / "val").glob("*.png"))[:8]))
              .permute(0, 3, 1, 2).contiguous(), torch.device("cpu"), False)
with torch.no_grad():
    y_cpu = net(xb)
    y_gpu = net.to(gpu)(xb.to(gpu)).cpu()
diff = float((y_cpu - y_gpu).abs().max())
check(diff < 1e-3, f"classifier forward CPU vs {gpu.type}: max |diff| {diff:.2e} < 1e-3")

if failures:
    print(f"gpu_check: FAILED {len(failures)} check(s): {failures}", flush=True)
    sys.exit(1)
print("gpu_check: all checks passed" + (" (dry run on the CPU)" if dry else ""), flush=True)
EOF
