"""Finetuning a generator against a frozen patch classifier (Chai et al. 2020, Sec. 4.4: "how
patch cues change as a result of changes in the generator"). The original code never released
this part; this is our construction of it.

The source GAN (``dcgan`` on ``celeba``) continues its own adversarial training, G and D from
their final checkpoint with their optimiser states, with one more term in G's loss:

    L_G = softplus(-D(G(z))) + lambda * CE(C(G(z)), real)   (CE averaged over every patch)

where C is a frozen patch classifier from notebook 02 (eval mode; gradients flow through it into
G, its weights never change). D keeps G close to the reals; the second term pushes every patch
of every sample towards "real" under C. Every ``eval_every`` steps the run logs, on fresh
samples (the same latents each time): C's AP against the real validation split and the share of
samples C calls fake; the median distance from each sample to its nearest real (how far G is
from the reals) and to its nearest other sample (falls if G collapses), and the radial-spectrum
distance to the reals.

A run folder ``checkpoints/finetune/<world>/<run name>/`` holds ``latest.pt`` (resumable,
bit-identical on the same machine: all randomness comes from one seeded generator saved with
the weights), ``config.json``, ``history.csv``, ``final.pt`` (G) and ``done.json``; a finished run
is skipped. The finetuned generator's fakes go through the same pipeline into
``data/<world>/finetuned/fake/<dataset>/<name>/{train,val,test}`` (a manifest of their own,
so the world's own sets and notebook 03's table are untouched).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import paths, runs
from .batches import random_windows
from .checkpoint import eval_precision, folder_maps, load_checkpoint, logit_maps
from .config import fingerprint, to_dict
from .data import FAKE, REAL, load_folder, to_uint8
from .devices import resolve_device
from .embedded import SPLITS, read_manifest, set_is_complete, write_set
from .generators import get_generator
from .generators.base import from_uint8
from .generators.gan import discriminator_step
from .generators.training import (
    RowLog,
    batch_from,
    cpu_state,
    finish_run,
    finished,
    start_run,
    train_loop,
)
from .grids import run_setup
from .images import atomic_write_text, sha256_cached, sha256_files
from .layout import fake_key, real_key
from .models import inference_model
from .parts import top_patches
from .preprocess import PIPELINE
from .quality import knn_distances, nn_distances, spectrum_distance
from .receptive_field import receptive_field
from .score_modes import scores_from_maps
from .scoring import evaluate as score_sets
from .segment import parse_set
from .stats import binary_metrics
from .train import train
from .world import fake_items, split_seed, world_config_of


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a finetuning run's result."""

    dataset: str = "celeba"  # real dataset of the source generator
    generator: str = "dcgan"  # the source GAN (needs a discriminator: dcgan or upconv)
    lam: float = 1.0  # weight of the "look real to C" term in G's loss
    steps: int = 400  # finetuning steps (one D step and one G step each)
    batch_size: int = 64  # reals and fakes per step
    lr_g: float = 2e-4  # Adam learning rate of G (the source GAN's)
    lr_d: float = 2e-4  # Adam learning rate of D
    eval_every: int = 50  # steps between logged evaluations
    eval_n: int = 200  # fresh samples per evaluation (the same latents every time)
    window: int = 0  # C judges one random window of this side (network px) per sample, as
    #                  notebook 02's patch models train; 0 = the whole (upsampled) sample
    checkpoint_every: int = 50  # steps between resumable saves
    seed: int = 0  # batches, latents, flips
    precision: str = "auto"  # C's forward in G's loss: "fp32", "bf16" features (fp32 head), or
    #                          "auto": as notebook 03 scores C (``checkpoint.eval_precision``)

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.lam < 0 or self.steps < 1 or self.batch_size < 2:
            raise ValueError("lam must be >= 0, steps >= 1 and batch_size >= 2")
        if self.eval_every < 1 or self.eval_n < 2:
            raise ValueError("eval_every must be >= 1 and eval_n >= 2")


@dataclass
class FinetuneResult:
    """What :func:`finetune` gives back."""

    run_dir: Path
    generator: Any  # the finetuned generator (a TorchGenerator; sample/generate as usual)
    history: pd.DataFrame  # one row per evaluation (step 0 = before finetuning)
    skipped: bool  # True when a finished run was found


def run_name(cfg: FinetuneConfig, classifier: str) -> str:
    """``<dataset>_<generator>__<classifier model>_lam<lambda>_seed<seed>``."""
    return f"{cfg.dataset}_{cfg.generator}__{classifier}_lam{cfg.lam:g}_seed{cfg.seed}"


def generator_quality(samples: np.ndarray, reals: np.ndarray) -> dict[str, float]:
    """How far samples (N x S x S x 3 uint8) are from reals and from each other:
    ``nn_real`` (median L2 to the nearest real, [0, 1] pixel scale), ``nn_sample`` (median L2 to
    the nearest *other* sample: drops when G collapses), ``spectrum`` (radial-spectrum RMS log
    distance to the reals)."""

    return {"nn_real": float(np.median(nn_distances(samples, reals))),
            "nn_sample": float(np.median(knn_distances(samples, samples, 2)[:, 1])),
            "spectrum": spectrum_distance(samples, reals)}


def classifier_stats(classifier: torch.nn.Module, fakes: np.ndarray, real_maps: np.ndarray,
                     device: torch.device) -> dict[str, float]:
    """The frozen classifier on fakes (N x S x S x 3 uint8) against precomputed real maps:
    ``ap`` (fake positive) and ``called_fake`` (share of fakes scored > 0.5; mean patch
    softmax), and ``score`` (mean image score of the fakes)."""

    maps = logit_maps(classifier, fakes, device=device)
    s_fake = scores_from_maps(maps)
    s = np.r_[scores_from_maps(real_maps), s_fake]
    y = np.r_[np.full(len(real_maps), REAL), np.full(len(maps), FAKE)]
    return {"ap": binary_metrics(s, y)["ap"], "called_fake": float((s_fake > 0.5).mean()),
            "score": float(s_fake.mean())}


@dataclass
class _Job:
    """One finetuning, prepared: the resolved config, the frozen classifier, the source
    generator, the reals, and the run folder with its fingerprint."""

    cfg: FinetuneConfig
    ck: Any  # checkpoint.Checkpoint
    gen: Any  # the source TorchGenerator
    reals: np.ndarray  # N x S x S x 3 uint8, the reals G's discriminator trains on
    val_reals: np.ndarray  # the reals the logged statistics compare against
    folder: Path
    fp: str
    record: dict[str, Any]


def _prepare(cfg: FinetuneConfig, classifier_run: str | os.PathLike, root: Path,
             out_dir: str | os.PathLike | None, dev: torch.device, progress: bool) -> _Job:
    ck = load_checkpoint(classifier_run, device=dev)
    if cfg.precision == "auto":  # recorded resolved, so the fingerprint says what ran
        cfg = replace(cfg, precision=eval_precision(ck, dev))
    gen = get_generator(cfg.dataset, cfg.generator, world_root=root, device=str(dev),
                        progress=progress)
    if not hasattr(gen, "discriminator"):
        raise ValueError(f"{cfg.generator}: has no discriminator to continue adversarial "
                         "training with (finetuning needs a GAN: dcgan or upconv)")
    reals, real_files, _ = load_folder(root / real_key(cfg.dataset) / "train")
    val_reals = load_folder(root / real_key(cfg.dataset) / "val")[0]
    if reals.shape[1] != gen.size or ck.input_size != gen.size:
        raise ValueError(f"sizes differ: reals {reals.shape[1]} px, generator {gen.size} px, "
                         f"classifier trained on {ck.input_size} px")
    record = {"config": to_dict(cfg), "generator_sha256": gen.checkpoint_sha256,
              "classifier": ck.path.as_posix(), "classifier_sha256": sha256_cached(ck.path),
              "classifier_model": ck.name,
              "reals": fingerprint(sorted(sha256_files(real_files)))}
    folder = Path(out_dir) if out_dir else (paths.checkpoints_dir() / "finetune" / root.name
                                            / run_name(cfg, ck.name))
    return _Job(cfg, ck, gen, reals, val_reals, folder, fingerprint(record), record)


def _train(job: _Job, dev: torch.device, *, force: bool, progress: bool,
           stop_after: int | None) -> None:
    """The adversarial finetuning loop: resumes from the folder's ``latest.pt``, ends with
    ``final.pt`` and ``history.csv`` (one row per evaluation)."""
    cfg, gen = job.cfg, job.gen
    start_run(job.folder, job.fp, job.record, force=force)
    state = gen.training_state()
    G, D, opt_g, opt_d = _resumed_gan(gen, state, cfg)
    C = _frozen_classifier(job.ck.model, cfg.precision)
    data = from_uint8(job.reals, gen.channels)
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    eval_z = gen.sample_latent(cfg.eval_n, cfg.seed + 12345)
    real_maps = logit_maps(C, job.val_reals, device=dev)
    history = RowLog()
    n, b = len(data), cfg.batch_size
    target = torch.full((b,), REAL, dtype=torch.long, device=dev)

    def evaluate_now(step: int) -> None:
        G.eval()
        with torch.no_grad():
            fakes = to_uint8(gen.generate(eval_z))
        G.train()
        history.rows.append({"step": step, **classifier_stats(C, fakes, real_maps, dev),
                             **generator_quality(fakes, job.val_reals)})

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        if step == 0 and not history.rows:
            evaluate_now(0)
        idx = torch.randint(0, n, (b,), generator=rng)
        flips = torch.rand(b, generator=rng) < 0.5
        z = torch.randn(b, gen.latent_dim, generator=rng).to(dev)
        real = batch_from(data, idx, flips, dev, False)
        fake = G(z)
        loss_d = discriminator_step(D, opt_d, real, fake)
        rgb = fake.repeat(1, 3, 1, 1) if fake.shape[1] == 1 else fake
        if cfg.window:  # every patch's loss as on the whole sample, at a fraction of the cost
            wrng = np.random.default_rng([cfg.seed, step])
            logits = C(random_windows(C.resize(rgb), cfg.window, wrng), resize=False)
        else:
            logits = C(rgb)
        h, w = logits.shape[-2:]
        loss_c = F.cross_entropy(logits, target.view(b, 1, 1).expand(b, h, w))
        loss_g = F.softplus(-D(fake)).mean() + cfg.lam * loss_c
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            evaluate_now(step + 1)
        return {"d": loss_d, "g": loss_g.detach(), "c": loss_c.detach()}

    parts = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d, "history": history}
    _, seconds = train_loop(job.folder, job.fp, steps=cfg.steps,
                            checkpoint_every=cfg.checkpoint_every, parts=parts, rng=rng,
                            step_fn=step_fn, desc="finetune", progress=progress,
                            stop_after=stop_after)
    _finish(job, gen, state, (G, D, opt_g, opt_d), history, seconds)


def _frozen_classifier(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The classifier frozen: its BatchNorm folded (faster, the same function), in the
    precision notebook 03 scores it with (G's loss and the logged statistics alike)."""
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return inference_model(model, precision)


def _resumed_gan(gen: Any, state: dict[str, Any], cfg: FinetuneConfig
                 ) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer,
                            torch.optim.Optimizer]:
    """The generator's G and D in training mode with their saved weights, and their Adam
    optimisers with their saved state at this finetuning's learning rates."""
    G, D = gen.net, gen.discriminator
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    G.train()
    D.train()
    opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=(0.5, 0.999))
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    for opt, lr in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr
    return G, D, opt_g, opt_d


def _finish(job: _Job, gen: Any, state: dict[str, Any], nets: tuple[Any, Any, Any, Any],
            history: RowLog, seconds: float) -> None:
    """``final.pt`` (the finetuned GAN, as ``generators`` saves one) and ``history.csv``."""
    G, D, opt_g, opt_d = nets
    G.eval()
    final = {"kind": "gan", "config": state["config"], "size": gen.size,
             "channels": gen.channels, "G": cpu_state(G.state_dict()),
             "D": cpu_state(D.state_dict()), "opt_g": cpu_state(opt_g.state_dict()),
             "opt_d": cpu_state(opt_d.state_dict())}
    atomic_write_text(job.folder / "history.csv", pd.DataFrame(history.rows).to_csv(index=False))
    finish_run(job.folder, job.fp, final, job.cfg.steps, seconds)


def finetune(cfg: FinetuneConfig, classifier_run: str | os.PathLike, *,
             world_root: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             device: str | None = None, progress: bool = True, force: bool = False,
             stop_after: int | None = None) -> FinetuneResult:
    """Finetune ``cfg.generator`` of ``cfg.dataset`` against the frozen classifier of
    ``classifier_run`` (a run folder or its best.pt); see the module docstring. Resumes an
    interrupted run, skips a finished one (``force`` starts over). ``stop_after``: stop after
    that many steps of this call, as a kill would (tests)."""
    dev = resolve_device(device)
    job = _prepare(cfg, classifier_run, Path(world_root), out_dir, dev, progress)
    skipped = finished(job.folder, job.fp) is not None and not force
    if not skipped:
        _train(job, dev, force=force, progress=progress, stop_after=stop_after)
    done = finished(job.folder, job.fp)
    assert done is not None
    # The finished generator: the source's class with the finetuned weights, named after the
    # run (minus the dataset), so finetunes of other settings never share a set.
    name = run_name(job.cfg, job.ck.name).split("__", 1)[1]
    tuned = type(job.gen)(f"{job.cfg.generator}_ft_{name}", job.cfg.dataset,
                          job.folder / "final.pt", done["sha256"], dev,
                          {"source": "finetuned", "run_dir": str(job.folder)})
    return FinetuneResult(job.folder, tuned, pd.read_csv(job.folder / "history.csv"), skipped)


# --- after finetuning (notebook 05) ------------------------------------------------------------

def finetuned_root(world_root: str | os.PathLike) -> Path:
    """``<world>/finetuned``: the finetuned generators' fake sets, with a manifest of their own."""
    return Path(world_root) / "finetuned"


def write_fake_set(gen: Any, world_root: str | os.PathLike, *, progress: bool = True) -> Path:
    """Sample ``gen`` (a finetuned generator) to exactly the real split counts of its dataset,
    with the world's per-split seeds, through the same pipeline as every other set, into
    ``<world>/finetuned/fake/<dataset>/<gen.name>``; skipped when complete. Returns the set's
    folder (holding ``train``, ``val``, ``test``)."""

    root = Path(world_root)
    cfg = world_config_of(root)
    manifest = read_manifest(root)
    real = manifest["sets"][real_key(gen.dataset)]
    counts = {s: int(real["splits"][s]["count"]) for s in SPLITS}
    seeds = {s: split_seed(cfg.seed, gen.dataset, gen.name, s) for s in SPLITS}
    key = fake_key(gen.dataset, gen.name)
    out = finetuned_root(root)
    fp = fingerprint({"set": key, "size": cfg.size, "counts": counts, "seeds": seeds,
                      "weights": gen.checkpoint_sha256, "pipeline": PIPELINE,
                      "real": real.get("fingerprint")})
    if not set_is_complete(out, key, fp):
        meta = {"kind": "fake", "dataset": gen.dataset, "generator": gen.name,
                "fingerprint": fp, "seeds": seeds, "weights_sha256": gen.checkpoint_sha256,
                "weights": str(gen.checkpoint), "generator_source": "finetuned",
                "world_seed": cfg.seed}
        write_set(out, key, {s: fake_items(gen, counts[s], seeds[s], s) for s in SPLITS},
                  size=cfg.size, meta=meta, world=manifest["world"], progress=progress)
    return out / key


def _top_patch_frames(run_dirs: dict[str, tuple[str | os.PathLike, Path, str]], real_root: Path,
                      dataset: str, *, split: str = "test", seed: int = 0,
                      device: str | None = None) -> dict[str, pd.DataFrame]:
    """Top-patch frames (``parts.top_patches``) for named (classifier run, fake set root, fake
    set key) triples, each against the reals of ``dataset`` in ``real_root`` (the world):
    ``{name: (run, set_root, key)}`` -> ``{name: frame}``. Label maps come from the cached
    parser (``segment.parse_set``)."""

    real_set = real_key(dataset)
    real_lab, real_found, _ = parse_set(real_root, real_set, split)
    out = {}
    for name, (run, set_root, key) in run_dirs.items():
        ck = load_checkpoint(run, device=device)
        lab, found, _ = parse_set(set_root, key, split)
        real_maps = folder_maps(ck, real_root / real_set / split, device=device)
        fake_maps = folder_maps(ck, Path(set_root) / key / split, device=device)
        maps = np.concatenate([real_maps, fake_maps])
        labels = np.r_[np.full(len(real_maps), REAL), np.full(len(fake_maps), FAKE)]
        rf = receptive_field(ck.model.config, ck.input_size)
        out[name] = top_patches(maps, labels, np.concatenate([real_lab, lab]),
                                np.concatenate([real_found, found]), rf, seed=seed)
    return out


def top_patch_frames(classifier_run: str | os.PathLike, fresh_run: str | os.PathLike,
                     finetuned_dir: Path, world_root: str | os.PathLike, dataset: str,
                     generator: str, *, seed: int = 0,
                     device: str | None = None) -> dict[str, pd.DataFrame]:
    """Notebook 05's top patches (``parts.top_patches`` frames on the test split, each with the
    real test faces): the frozen classifier (``classifier_run``) on the source ``generator``'s
    fakes and on the finetuned fakes (``finetuned_dir``, :func:`write_fake_set`), and the fresh
    classifier (``fresh_run``, :attr:`Comparison.fresh_run`) on the finetuned fakes."""
    root, ft_root = Path(world_root), finetuned_root(world_root)
    key = fake_key(dataset, Path(finetuned_dir).name)
    return _top_patch_frames(
        {"original G, frozen C": (classifier_run, root, fake_key(dataset, generator)),
         "finetuned G, frozen C": (classifier_run, ft_root, key),
         "finetuned G, fresh C": (fresh_run, ft_root, key)},
        root, dataset, seed=seed, device=device)


def train_fresh(frozen_run: str | os.PathLike, fake_dir: str | os.PathLike, *,
                device: str | None = None, progress: bool = True) -> Any:
    """A fresh classifier with the frozen run's configuration and reals, trained on the
    samples of another generator (``fake_dir`` with ``train``/``val``: the finetuned one, or
    the control) in the samples-only setting (these generators have no inversions), in
    ``<frozen run's pair folder>/../<dataset>_<set>/samples/<arch>_<depth>_seed<seed>``.
    Returns ``train.TrainResult`` (a finished run is skipped)."""
    from dataclasses import replace


    cfg, real, _ = run_setup(frozen_run)
    cfg = replace(cfg, setting="samples")
    fake_dir = Path(fake_dir)
    pair = runs.run_dir_of(frozen_run).parent  # <root>/<dataset>_<generator>[/<setting>]
    if pair.name in runs.SETTINGS:
        pair = pair.parent
    out = pair.parent / f"{real.name}_{fake_dir.name}" / "samples" / cfg.run_name()
    return train(cfg, real, fake_dir, out, device=device, progress=progress, replace_stale=True)


@dataclass
class Comparison:
    """What :func:`compare_classifiers` returns: the headline ``summary`` (:func:`summary`),
    the ``scoring.evaluate`` tables of the three classifiers (``"frozen C"``, ``"fresh C"``,
    ``"control C"``) and the two fresh classifiers' run folders."""

    summary: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    fresh_run: Path  # trained on the finetuned generator's samples
    control_run: Path  # trained the same way on the control generator's samples


def compare_classifiers(result: FinetuneResult, classifier_run: str | os.PathLike,
                        finetuned_dir: Path, world_root: str | os.PathLike, dataset: str,
                        generator: str, control: str, *, device: str | None = None,
                        n_boot: int = 2000) -> Comparison:
    """Notebook 05's comparison: the frozen classifier (``classifier_run``), a fresh one trained
    the same way on the finetuned samples (``finetuned_dir``, :func:`write_fake_set`) and a
    control one trained on the samples of ``control`` (an independently trained copy of
    ``generator``, never finetuned), each scored (``mean_softmax``, AUC intervals from
    ``n_boot`` resamples) on the real test faces against the test fakes of the source, the
    finetuned and the control generator."""
    root = Path(world_root)
    control_dir = write_fake_set(get_generator(dataset, control, world_root=root,
                                               device=str(resolve_device(device))), root)
    tests = {generator: root / fake_key(dataset, generator) / "test",
             finetuned_dir.name: finetuned_dir / "test", control_dir.name: control_dir / "test"}
    fresh = train_fresh(classifier_run, finetuned_dir, device=device).out_dir
    ctrl = train_fresh(classifier_run, control_dir, device=device).out_dir
    real_test = root / real_key(dataset) / "test"
    tables = {who: score_sets(run, real_test, tests, modes=["mean_softmax"], device=device,
                              n_boot=n_boot)
              for who, run in (("frozen C", classifier_run), ("fresh C", fresh),
                               ("control C", ctrl))}
    table = summary(result.history, tables["frozen C"], tables["fresh C"], generator,
                    finetuned_dir.name, tables["control C"], control_dir.name)
    return Comparison(table, tables, Path(fresh), Path(ctrl))


def summary(history: pd.DataFrame, frozen: pd.DataFrame, fresh: pd.DataFrame, generator: str,
            finetuned: str, control: pd.DataFrame | None = None,
            control_set: str | None = None) -> pd.DataFrame:
    """The finetuning's headline numbers, one row per quantity: the frozen and the fresh
    classifier's AUC (fake positive, with its bootstrap interval when the table has one), AP and
    share of fakes caught on every test set they were evaluated on (``scoring.evaluate``
    tables, mean_softmax rows), and the generator's distances before and after (first and last
    row of ``history``). ``control``: the table of the control classifier (trained the same way
    on ``control_set``, a second DCGAN that was never finetuned), so that "the finetuned fakes
    are still detectable" is read against what any DCGAN of this world gives."""
    names = {generator: "original G", finetuned: "finetuned G"}
    if control_set:
        names[control_set] = "control G"
    rows = []
    tables = [("frozen C", frozen), ("fresh C", fresh)]
    if control is not None:
        tables.append(("control C", control))
    for who, table in tables:
        t = table[table["mode"] == "mean_softmax"].set_index("fake_set")
        for name in t.index:
            label = names.get(name, name)
            for col, what in (("auc", "AUC"), ("auc_ci_low", "AUC 95% low"),
                              ("auc_ci_high", "AUC 95% high"), ("ap", "AP"),
                              ("fake_acc", "share called fake")):
                if col in t.columns:
                    rows.append({"quantity": f"{who}: {what} on {label} test fakes",
                                 "value": float(t.loc[name, col])})
    for col, what in (("nn_real", "median L2 to nearest real"),
                      ("nn_sample", "median L2 to nearest other sample"),
                      ("spectrum", "spectrum distance to reals")):
        rows.append({"quantity": f"G before: {what}", "value": float(history[col].iloc[0])})
        rows.append({"quantity": f"G after: {what}", "value": float(history[col].iloc[-1])})
    return pd.DataFrame(rows).set_index("quantity")


def reading(summary_table: pd.DataFrame) -> str:
    """A few sentences from a :func:`summary` table, each backed by its numbers: how far the
    frozen classifier fell on the finetuned fakes, and whether the fresh classifier finds them
    as well as the control classifier finds its own never-finetuned DCGAN (by their AUC
    intervals: overlapping intervals are reported as no difference found)."""
    v = summary_table["value"]

    def get(q: str) -> float | None:
        return float(v[q]) if q in v.index else None

    out = []
    before = get("frozen C: AUC on original G test fakes")
    after = get("frozen C: AUC on finetuned G test fakes")
    if before is not None and after is not None:
        out.append(f"The frozen classifier's AUC falls from {before:.3f} on the source DCGAN's "
                   f"test fakes to {after:.3f} on the finetuned generator's.")
    fresh = [get(f"fresh C: AUC{s} on finetuned G test fakes") for s in ("", " 95% low",
                                                                        " 95% high")]
    ctrl = [get(f"control C: AUC{s} on control G test fakes") for s in ("", " 95% low",
                                                                       " 95% high")]
    if None not in fresh and None not in ctrl:
        if fresh[2] < ctrl[1]:
            word = "finds them *less* well than"
        elif fresh[1] > ctrl[2]:
            word = "finds them *better* than"
        else:
            word = "finds them as well as (intervals overlap: no difference found)"
        out.append(f"A fresh classifier trained on the finetuned samples reaches AUC "
                   f"{fresh[0]:.3f} "
                   f"[{fresh[1]:.3f}, {fresh[2]:.3f}] on them, and {word} the control classifier "
                   f"finds the independently trained, never finetuned DCGAN: {ctrl[0]:.3f} "
                   f"[{ctrl[1]:.3f}, {ctrl[2]:.3f}].")
    return " ".join(out) or "No AUC rows to read."

