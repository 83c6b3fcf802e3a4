"""The paper's experimental protocol as data: which classifiers notebook 02 trains, how, and what
notebook 03 decides with them (Chai et al. 2020, Sec. 3.2-4 and the original training scripts).

Written down before any result is looked at, so a profile can be run but not tuned after the
fact:

- **Field size relative to the face.** The paper fed 128 px faces upsampled to 299 px, so Xception
  block1..3 judge patches of about 6 %, 14 % and 30 % of the face side. Here the 64 px faces are
  upsampled to ``load_size`` = 192 px inside the network (3x, the smallest multiple whose block1
  field, 19 px, is at most 10 % of the face: 19 / 192 = 0.099; block2 0.22, block3 0.47).
- **Training fakes.** Samples of the training generator plus its inversions of the real training
  images, index-paired in each batch (the primary setting); samples only is the ablation.
- **Stopping.** The original's rule (``train.original_patience``: 50 / 20 / 10 epochs without a
  better validation per-patch accuracy, stop at 1.0) under an epoch cap set by the time budget.
- **Crops.** Patch models train on random windows of the upsampled faces (``crops``, network px,
  at least 1.5 fields wide); every cell's loss is the same as on whole images, and validation and
  evaluation see whole images. This is what makes the 3x upsampling affordable on a CPU.
- **Precision.** Training steps run under bf16 autocast where the device has native bf16
  (2.2x faster steps on a 2-core AMD EPYC; weights, optimiser, loss and all evaluation stay fp32),
  fp32 elsewhere; every run records the precision it used (``TrainConfig.precision``).
- **Budget** (two CPU cores of the slow kind, see the README): ``default`` fits the series'
  time budget with one training seed and the primary setting; ``full`` adds the second setting,
  three seeds for block1, block2 and the full model, the full model at the patch models' load
  size, and a 30-epoch cap. Which runs each profile has is in :data:`PROFILES`.

Pre-registered analysis (notebook 03 prints it before any result): the primary metric is ROC AUC
with fake as the positive class, from the mean patch softmax (computed in log space), on the
unseen generators' test splits; the comparison that decides a verdict is AUC(patch model) -
AUC(full model) per unseen generator with a 95 % paired bootstrap interval over test images (and
over seeds when a profile has several): "patch better" / "no difference" / "full better" by whether
the interval excludes 0. Everything else (AP, the other score modes, the samples-only setting) is
secondary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import runs

PRIMARY_METRIC = "auc"  # ROC AUC, fake = positive class
PRIMARY_MODE = "mean_softmax"  # image score: mean patch softmax (log-mean-exp in log space)
PRIMARY_SETTING = "samples_inversions"
CONFIDENCE = 0.95  # of every bootstrap interval


@dataclass(frozen=True)
class Profile:
    """One grid of classifier runs: models, sizes, settings, seeds, epoch cap."""

    name: str  # "default", "full" or "smoke"
    models: tuple[tuple[str, str], ...]  # (arch, depth); the full model is the baseline
    load_size: int  # network input side of the patch models (the 64 px faces upsampled)
    full_load_size: int  # network input side of the full-image models (0: the image's)
    crops: dict[str, int] = field(default_factory=dict)  # model -> training window, net px
    settings: tuple[str, ...] = (PRIMARY_SETTING,)  # first one is primary
    seeds: tuple[int, ...] = (0,)  # training seeds of every model
    extra_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)  # model -> more
    epochs: int = 2  # epoch cap (an epoch is one pass over the real training images)
    batch_size: int = 32  # 16 real + 16 fake, the paper's
    steps_per_epoch: int = 0  # cap on steps per epoch (smoke); 0 = a full pass
    precision: str = "auto"  # training steps: "auto" = bf16 autocast where the device has
    #                          native bf16 (Zen 4, recent Xeons, CUDA), else fp32; recorded

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Per-model changes of the base config (``train.train_grid``'s ``overrides``)."""
        out: dict[str, dict[str, Any]] = {}
        for arch, depth in self.models:
            name = f"{arch}_{depth}"
            out[name] = ({"load_size": self.full_load_size} if depth == "full"
                         else {"load_size": self.load_size, "crop": self.crops.get(name, 0)})
        return out

    def runs(self) -> list[tuple[str, str, str, int]]:
        """Every run of the profile: ``(setting, arch, depth, seed)``, primary setting first.
        Secondary settings train the default seeds only."""
        out = []
        for k, setting in enumerate(self.settings):
            for arch, depth in self.models:
                extra = self.extra_seeds.get(f"{arch}_{depth}", ()) if k == 0 else ()
                out += [(setting, arch, depth, s) for s in (*self.seeds, *extra)]
        return out


XCEPTION_GRID = (("xception", "block1"), ("xception", "block2"), ("xception", "block3"),
                 ("xception", "full"))
PROFILES: dict[str, Profile] = {
    "default": Profile(
        name="default", models=XCEPTION_GRID, load_size=192, full_load_size=0,
        crops={"xception_block1": 96, "xception_block2": 96, "xception_block3": 144},
        epochs=2),
    # The default plus training seeds 1 and 2 for block1, block2 and the full model: the
    # paired bootstrap then runs over seeds too. Opt-in (about 10 more minutes for notebooks
    # 02 and 03 on the reference CPU): it does not fit the 15-minute budget of the series.
    "seeds": Profile(
        name="seeds", models=XCEPTION_GRID, load_size=192, full_load_size=0,
        crops={"xception_block1": 96, "xception_block2": 96, "xception_block3": 144},
        extra_seeds={"xception_block1": (1, 2), "xception_block2": (1, 2),
                     "xception_full": (1, 2)},
        epochs=2),
    "full": Profile(
        name="full", models=XCEPTION_GRID, load_size=192, full_load_size=192,
        crops={"xception_block1": 96, "xception_block2": 96, "xception_block3": 144},
        settings=(PRIMARY_SETTING, "samples"),
        extra_seeds={"xception_block1": (1, 2), "xception_block2": (1, 2),
                     "xception_full": (1, 2)},
        epochs=30),
    # 32 px world: every code path (load size, crops, both settings, two seeds), tiny budgets.
    "smoke": Profile(
        name="smoke", models=(("xception", "block1"), ("xception", "block2"),
                              ("xception", "full")),
        load_size=64, full_load_size=0, crops={"xception_block1": 40},
        settings=(PRIMARY_SETTING, "samples"), extra_seeds={"xception_block1": (1,)},
        epochs=1, steps_per_epoch=3),
    # Notebook 07 (manipulated faces): block2 (22 % of the face side, the paper-protocol grid's
    # middle patch size) and the full model, trained on reals vs. one manipulation, each batch
    # pairing reals with their own manipulated faces (setting "paired": on a pilot with the
    # deepfake set, unpaired block2 stayed near chance for 3 epochs), 3 epochs: what the
    # series' budget affords. ``manipulations_full`` adds block1 and block3 and a 30-epoch cap.
    "manipulations": Profile(
        name="manipulations", models=(("xception", "block2"), ("xception", "full")),
        load_size=192, full_load_size=0, crops={"xception_block2": 96}, settings=("paired",),
        epochs=3),
    # Opt-in: the same models for 10 epochs (about 27 minutes of training for the four
    # manipulations on the 2-core AMD EPYC: 16 s per block2 epoch, 25 s per full-model epoch).
    "manipulations_long": Profile(
        name="manipulations_long", models=(("xception", "block2"), ("xception", "full")),
        load_size=192, full_load_size=0, crops={"xception_block2": 96}, settings=("paired",),
        epochs=10),
    "manipulations_full": Profile(
        name="manipulations_full", models=XCEPTION_GRID, load_size=192, full_load_size=0,
        crops={"xception_block1": 96, "xception_block2": 96, "xception_block3": 144},
        settings=("paired",), epochs=30),
    "manipulations_smoke": Profile(
        name="manipulations_smoke", models=(("xception", "block2"), ("xception", "full")),
        load_size=64, full_load_size=0, crops={"xception_block2": 40}, settings=("paired",),
        epochs=1, steps_per_epoch=3),
}


def profile(name: str, *, smoke: bool = False) -> Profile:
    """The named profile (in smoke mode ``"smoke"``, or ``"manipulations_smoke"`` for the
    manipulation profiles)."""
    key = ("manipulations_smoke" if name.startswith("manipulations") else "smoke") \
        if smoke else name
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[key]


def with_epochs(p: Profile, epochs: int) -> Profile:
    """``p`` with another epoch cap (0 keeps the profile's)."""
    return replace(p, epochs=epochs) if epochs else p


def train_profile(p: Profile, real_dir: str | os.PathLike, fake_dir: str | os.PathLike,
                  world: str, dataset: str, generator: str, *, device: str | None = None,
                  progress: bool = True, force: bool = False) -> pd.DataFrame:
    """Train (or skip, when finished) every run of profile ``p`` on one training pair; one row
    per run (see ``train.train_grid``), run folders under ``runs.run_root(world, dataset,
    generator, setting)``."""
    from . import train
    from .generators.training import resolve_precision
    from .models import resolve_device

    base = train.TrainConfig(batch_size=p.batch_size, epochs=p.epochs,
                             steps_per_epoch=p.steps_per_epoch,
                             precision=resolve_precision(p.precision, resolve_device(device)))
    tables = []
    planned = p.runs()
    for setting in p.settings:
        inv = train.inversions_dir(fake_dir) if setting == "samples_inversions" else None
        cfg = replace(base, setting=setting)
        by_seed: dict[int, list[tuple[str, str]]] = {}
        for s, arch, depth, seed in planned:
            if s == setting:
                by_seed.setdefault(seed, []).append((arch, depth))
        for seed, models in sorted(by_seed.items()):
            tables.append(train.train_grid(
                models, real_dir, fake_dir, runs.run_root(world, dataset, generator, setting),
                base=replace(cfg, seed=seed), device=device, progress=progress, force=force,
                inversions=inv, overrides=p.overrides()))
    return pd.concat(tables)


def run_folders(p: Profile, world: str, dataset: str, generator: str,
                setting: str = PRIMARY_SETTING) -> dict[tuple[str, int], Path]:
    """``{(model, seed): run folder}`` of the profile's runs in one setting (finished or not)."""
    root = runs.run_root(world, dataset, generator, setting)
    sizes = p.overrides()
    return {(f"{a}_{d}", s): root / runs.leaf_name(a, d, sizes[f"{a}_{d}"]["load_size"], s)
            for st, a, d, s in p.runs() if st == setting}


def finished_runs(p: Profile, world: str, dataset: str, generator: str,
                  setting: str = PRIMARY_SETTING, *, required: bool = False
                  ) -> dict[tuple[str, int], Path]:
    """The profile's finished runs (``done.json`` present) of one setting, ``{(model, seed):
    folder}``; with ``required``, a missing run raises naming it (run notebook 02 first)."""
    folders = run_folders(p, world, dataset, generator, setting)
    done = {k: f for k, f in folders.items() if (f / "done.json").is_file()}
    missing = sorted(set(folders) - set(done))
    if required and missing:
        raise FileNotFoundError(
            f"profile {p.name!r}, setting {setting!r}: no finished run of "
            f"{', '.join(f'{m} seed {s}' for m, s in missing)} under "
            f"{next(iter(folders.values())).parent}; run notebook 02 with the same profile")
    return done


def models_table(p: Profile, image_size: int) -> pd.DataFrame:
    """One row per model of ``p`` on ``image_size`` px faces: network input side, receptive
    field and stride (network px), logit map, field fraction of the face side, training window
    and parameter count."""
    from .models import ModelConfig, build_model, count_parameters
    from .receptive_field import field_fraction, receptive_field

    rows = []
    over = p.overrides()
    for arch, depth in p.models:
        name = f"{arch}_{depth}"
        cfg = ModelConfig(arch=arch, depth=depth, load_size=over[name]["load_size"])
        rf = receptive_field(cfg, image_size)
        rows.append({"model": name, "input_px": cfg.load_size or image_size, "rf_px": rf.size,
                     "stride_px": rf.stride, "map": f"{rf.output_size[0]}x{rf.output_size[1]}",
                     "field_fraction": round(field_fraction(cfg, image_size), 4),
                     "train_window_px": over[name].get("crop", 0) or cfg.load_size or image_size,
                     "params_M": round(count_parameters(build_model(cfg)) / 1e6, 3)})
    return pd.DataFrame(rows).set_index("model")


def preregistration(p: Profile) -> str:
    """The analysis plan of notebook 03 as markdown, printed before any result."""
    seeds = sorted({s for *_, s in p.runs()})
    patch = [f"{a} {d}" for a, d in p.models if d != "full"]
    return "\n".join([
        "**Pre-registered analysis** (fixed in `patchforensics.protocol` before the run):",
        f"- primary metric: ROC AUC, fake = positive, image score `{PRIMARY_MODE}` "
        "(log-mean-exp of the patch log-probabilities), on each unseen generator's test split;",
        f"- primary setting: `{p.settings[0]}`; training seeds {seeds}; profile `{p.name}`;",
        f"- decisive comparison: AUC(patch) - AUC(full) for {', '.join(patch)} against the full "
        f"model, per unseen generator, with a {CONFIDENCE:.0%} paired bootstrap interval over "
        "test images (and seeds where there are several);",
        "- verdict per generator: *patch better* if the interval lies above 0, *full better* if "
        "below, *no difference* otherwise; no verdict is drawn from a point estimate;",
        "- secondary (reported, not decisive): AP with either class positive, the other score "
        "modes (`mean_logit`, `vote`), the samples-only setting, calibration, heatmaps.",
    ])


def one_setting(table: pd.DataFrame, setting: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of one training setting: ``setting``, else the primary one when present, else the
    first; tables without a ``setting`` column (older runs) pass whole."""
    if "setting" not in table.columns:
        return table, ""
    have = list(dict.fromkeys(table["setting"].fillna("")))
    if setting is None:
        setting = PRIMARY_SETTING if PRIMARY_SETTING in have else have[0] if have else ""
    if setting not in have:
        raise ValueError(f"no rows of setting {setting!r}; the table has {have}")
    return table[table["setting"].fillna("") == setting], setting
