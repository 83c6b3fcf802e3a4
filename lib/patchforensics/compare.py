"""The pre-registered comparison of patch and full-image classifiers (Chai et al. 2020, Sec.
4.1: do models with small receptive fields generalise better to unseen generators?), computed
from the long per-image table of :func:`evaluate.image_scores`.

- :func:`primary_contrast`: one decisive contrast per patch model in the primary setting: the
  3-seed mean of AUC(patch) minus the 3-seed mean of AUC(full), each AUC the mean over the
  unseen generators trained here, with a Welch-type t-interval whose variance adds the
  between-seed variances and the image-sampling variance (:func:`stats.seed_image_contrast`).
- :func:`secondary_comparisons`: the same interval for every patch model x test pair (seen,
  unseen, domain-confounded and other-dataset pairs) and pooled rows, with p-values adjusted by
  Holm within a family, so a table of many comparisons does not read as many discoveries.

Seeds are the unit of the seed part: seeds of two models are independent samples. Test images
are the other source of noise; they are resampled with :func:`stats.boot_weights` (the same
resamples as every other interval of the project; every model and seed sees the same ones, so
the image part is paired). A set whose images come from a few people (Olivetti: 10 faces of each
of 4 test persons) is resampled by person instead (:func:`stats.group_boot_counts`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import evaluate, stats
from .images import list_images
from .layout import set_key
from .protocol import PRIMARY_DATASET, PRIMARY_GENERATORS, one_setting

UNDER_TRAINED = "not tested: under-trained"  # the verdict where a compared run fails adequacy
CONTRAST_N_BOOT = 2000  # image resamples behind a contrast's image-variance part (stats.N_BOOT:
#   1000, behind the per-table intervals: the pre-registered contrasts get twice as many)
ALPHA = 0.05  # family-wise error rate of the Holm verdicts
SetKey = tuple[str, str]  # (dataset, set): set is "real" or a generator
Groups = Mapping[str | SetKey, np.ndarray]  # a plain dataset name means (dataset, "real")

PRIMARY_COLUMNS = ["model", "full_model", "setting", "generators", "auc_patch", "auc_full",
                   "diff", "se", "df", "ci_low", "ci_high", "method", "n_seeds",
                   "n_seeds_full", "adequate_runs", "cap_runs", "verdict"]
SECONDARY_COLUMNS = ["setting", "model", "full_model", "field_fraction", "dataset", "generator",
                     "generators",
                     "seen", "n_seeds", "n_seeds_full", "auc_patch", "auc_full", "diff", "se",
                     "df", "ci_low", "ci_high", "method", "adequate_runs", "cap_runs", "p",
                     "p_holm", "verdict", "verdict_holm"]


# --- image groups --------------------------------------------------------------------------------

def set_groups(world_root: str | os.PathLike, *, split: str = "test",
               datasets: Sequence[str] | None = None) -> dict[SetKey, np.ndarray]:
    """``{(dataset, set): person ids}`` of a world's test sets whose file names carry a person
    (:func:`stats.groups_from_names`; Olivetti reals, and any fake set named after them), in
    the order of :func:`evaluate.image_scores`' ``image`` index (the sorted files)."""
    root = Path(world_root)
    out: dict[SetKey, np.ndarray] = {}
    for dataset, gens in evaluate.world_sets(root, datasets).items():
        for name in ["real", *gens]:
            key = set_key(dataset, name)
            groups = stats.groups_from_names(list_images(root / key / split))
            if groups is not None:
                out[(dataset, name)] = groups
    return out


def _normalise_groups(groups: Groups | None, t: pd.DataFrame) -> dict[SetKey, np.ndarray]:
    # Without a mapping, a ``file`` column (if image_scores ever carries one) names the people.
    if groups is None:
        if "file" not in t.columns:
            return {}
        out = {}
        for (ds, name), g in t.groupby(["dataset", "set"], sort=False):
            first = g[(g["label"] == g["label"].iloc[0]) & (g["seed"] == g["seed"].iloc[0])]
            ids = stats.groups_from_names(first.sort_values("image")["file"].tolist())
            if ids is not None:
                out[(str(ds), str(name))] = ids
        return out
    return {(k, "real") if isinstance(k, str) else tuple(k): np.asarray(v)
            for k, v in groups.items()}


def _weights(n_real: int, n_fake: int, dataset: str, generator: str, n_boot: int, seed: int,
             groups: dict[SetKey, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return stats.boot_weights(n_real, n_fake, dataset, generator, n_boot=n_boot, seed=seed,
                                 real_groups=groups.get((dataset, "real")),
                                 fake_groups=groups.get((dataset, generator)))


# --- AUC per model, seed and test pair, on the test set and its resamples -----------------------

@dataclass
class _Fit:
    """One model (label) in one setting: AUC per seed on every test pair, whole and resampled."""

    info: dict[str, Any]  # arch, depth, train_set
    seeds: list[int]
    auc: dict[SetKey, np.ndarray]  # (dataset, generator) -> (n_seeds,)
    boot: dict[SetKey, np.ndarray]  # (dataset, generator) -> (n_seeds, n_boot)

    def pooled(self, pairs: Sequence[SetKey]) -> tuple[np.ndarray, np.ndarray]:
        """Per seed, the mean AUC over ``pairs`` (generators weighted equally): (n_seeds,) on
        the test set and (n_seeds, n_boot) on the resamples."""
        return (np.mean([self.auc[p] for p in pairs], 0),
                np.mean([self.boot[p] for p in pairs], 0))


def _fits(t: pd.DataFrame, n_boot: int, seed: int,
          groups: dict[SetKey, np.ndarray]) -> dict[str, _Fit]:
    """``{label: _Fit}`` of one setting's rows of one score mode."""
    weights: dict[SetKey, tuple[np.ndarray, np.ndarray]] = {}
    out: dict[str, _Fit] = {}
    for label, g in t.groupby("label", sort=False):
        seeds = sorted(g["seed"].unique().tolist())
        auc: dict[SetKey, list[float]] = {}
        boot: dict[SetKey, list[np.ndarray]] = {}
        for (sd, dataset), gd in g.groupby(["seed", "dataset"], sort=True):
            real = gd[gd["set"] == "real"].sort_values("image")["score"].to_numpy()
            for gen, gf in gd[gd["set"] != "real"].groupby("set", sort=False):
                fake = gf.sort_values("image")["score"].to_numpy()
                pair = (str(dataset), str(gen))
                if pair not in weights:
                    weights[pair] = _weights(len(real), len(fake), *pair, n_boot, seed, groups)
                w_real, w_fake = weights[pair]
                if (w_real.shape[1], w_fake.shape[1]) != (len(real), len(fake)):
                    raise ValueError(f"{label} seed {sd}: {len(real)} reals and {len(fake)} "
                                     f"fakes of {'/'.join(pair)}, other runs had "
                                     f"{w_real.shape[1]} and {w_fake.shape[1]}; the "
                                     "comparison needs the same test images for every run")
                auc.setdefault(pair, []).append(float(stats.weighted_auc(real, fake)[0]))
                boot.setdefault(pair, []).append(stats.weighted_auc(real, fake, w_real, w_fake))
        if any(len(v) != len(seeds) for v in auc.values()):
            raise ValueError(f"{label}: not every seed was scored on every test set")
        first = g.iloc[0]
        info = {k: first.get(k, "") for k in ("arch", "depth", "train_set")}
        info["field_fraction"] = float(first.get("field_fraction", np.nan))
        per_seed = g.drop_duplicates("seed")
        # Tables without the columns (older runs) count every run adequate and none capped.
        info["adequate"] = int(per_seed["adequate"].astype(bool).sum()) \
            if "adequate" in g else len(seeds)
        info["cap"] = int((per_seed["stopped_by"] == "cap").sum()) if "stopped_by" in g else 0
        out[str(label)] = _Fit(info, seeds, {k: np.array(v) for k, v in auc.items()},
                               {k: np.stack(v) for k, v in boot.items()})
    return out


def _pairs(fits: dict[str, _Fit], full: str | None) -> list[tuple[str, str]]:
    """(patch label, full label) of every patch model: against ``full`` when given, else the
    model of depth "full" with the patch model's architecture (patch models without one are
    skipped, as in :func:`evaluate.patch_vs_full`)."""
    if full is not None and full not in fits:
        raise ValueError(f"no full model {full!r}; the table has {sorted(fits)}")
    out = []
    for label, fit in fits.items():
        if fit.info["depth"] == "full":
            continue
        cands = [full] if full is not None else [
            lb for lb, f in fits.items()
            if f.info["depth"] == "full" and f.info["arch"] == fit.info["arch"]]
        if cands:
            out.append((label, cands[0]))
    return out


def _of_mode(scores: pd.DataFrame, mode: str) -> pd.DataFrame:
    t = scores[scores["mode"] == mode]
    if t.empty:
        raise ValueError(f"no scores of mode {mode!r}; the table has "
                         f"{sorted(set(scores['mode']))}")
    return t


def _contrast_row(patch: _Fit, full: _Fit, pairs: Sequence[SetKey],
                  level: float) -> dict[str, Any]:
    a, a_boot = patch.pooled(pairs)
    b, b_boot = full.pooled(pairs)
    c = stats.seed_image_contrast(a, a_boot, b, b_boot, level)
    n_runs = len(patch.seeds) + len(full.seeds)
    good = patch.info["adequate"] + full.info["adequate"]
    return {"n_seeds": len(patch.seeds), "n_seeds_full": len(full.seeds),
            "auc_patch": c.mean_a, "auc_full": c.mean_b, "diff": c.diff, "se": c.se,
            "df": c.df, "ci_low": c.ci_low, "ci_high": c.ci_high, "method": c.method,
            "adequate_runs": f"{good}/{n_runs}",
            "cap_runs": f"{patch.info['cap'] + full.info['cap']}/{n_runs}", "p": c.p,
            "verdict": stats.verdict(c.ci_low, c.ci_high) if good == n_runs
            else UNDER_TRAINED}


# --- the tables ---------------------------------------------------------------------------------

def adequacy_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run (setting, label, seed) of an :func:`evaluate.image_scores` table: its
    input side, the epochs it trained, what ended it (``stopped_by``: ``rule`` or ``cap``),
    its validation AUC's lower bound and whether it passes the plan's adequacy criterion."""
    cols = ["setting", "label", "seed", "input_size", "epochs", "stopped_by", "val_auc_ci_low",
            "adequate"]
    missing = [c for c in cols if c not in scores.columns]
    if missing:
        raise ValueError(f"the scores have no {missing}: score the runs again with this "
                         "version (evaluate.image_scores)")
    return scores[cols].drop_duplicates(["setting", "label", "seed"]).reset_index(drop=True)



def primary_contrast(scores: pd.DataFrame, *,
                     generators: Sequence[str] = PRIMARY_GENERATORS,
                     dataset: str = PRIMARY_DATASET, mode: str = "mean_softmax",
                     setting: str | None = None, full: str | None = None,
                     n_boot: int = CONTRAST_N_BOOT, seed: int = 0, level: float = stats.LEVEL,
                     groups: Groups | None = None) -> pd.DataFrame:
    """The decisive contrast of the pre-registered plan, one row per patch model.

    ``scores``: an :func:`evaluate.image_scores` table (columns ``label``, ``arch``, ``depth``,
    ``seed``, ``setting``, ``dataset``, ``set``, ``image``, ``mode``, ``score``; a ``file``
    column, when present, supplies person groups). ``setting``: None picks the primary one
    (:func:`protocol.one_setting`). For each patch model: AUC on each of ``generators`` of
    ``dataset`` (fake positive, ranking ``score``), averaged over the generators per seed; the
    seed mean of that minus the full model's (``full``: its label; default the depth-"full"
    model of the same architecture), with a ``level`` interval from
    :func:`stats.seed_image_contrast` (``n_boot`` image resamples seeded by ``seed``;
    ``groups``: ``{dataset or (dataset, set): person id per image}`` resamples those sets by
    person, e.g. from :func:`set_groups`). A generator missing for either model is an error:
    the pre-registered mean is over all of them.

    Columns: ``model``, ``full_model``, ``setting``, ``generators`` (comma-joined), ``auc_patch``,
    ``auc_full``, ``diff``, ``se``, ``df``, ``ci_low``, ``ci_high``, ``method``, ``n_seeds``,
    ``n_seeds_full``, ``adequate_runs`` and ``cap_runs`` (runs of the two models that pass the
    plan's adequacy criterion, and that the epoch cap ended, e.g. ``"6/6"``, ``"0/6"``; from
    the ``adequate`` and ``stopped_by`` columns when the table has them), ``verdict``
    (:func:`stats.verdict` of the interval, or :data:`UNDER_TRAINED` when a compared run
    fails adequacy)."""
    t, setting = one_setting(_of_mode(scores, mode), setting)
    t = t[(t["dataset"] == dataset) & t["set"].isin(["real", *generators])]
    fits = _fits(t, n_boot, seed, _normalise_groups(groups, t))
    pairs = [(dataset, g) for g in generators]
    rows = []
    for label, ref in _pairs(fits, full):
        missing = [p[1] for p in pairs if p not in fits[label].auc or p not in fits[ref].auc]
        if missing:
            raise ValueError(f"{label} vs {ref} ({setting}): no scores on {dataset} "
                             f"generators {missing}")
        row = _contrast_row(fits[label], fits[ref], pairs, level)
        del row["p"]
        rows.append({"model": label, "full_model": ref, "setting": setting,
                     "generators": ",".join(generators), **row})
    return pd.DataFrame(rows, columns=PRIMARY_COLUMNS)


def secondary_comparisons(scores: pd.DataFrame, *,
                          generators: Sequence[str] = PRIMARY_GENERATORS,
                          dataset: str = PRIMARY_DATASET, mode: str = "mean_softmax",
                          setting: str | None = None, full: str | None = None,
                          pooled: bool = True, family: str | None = None,
                          alpha: float = ALPHA, n_boot: int = CONTRAST_N_BOOT, seed: int = 0,
                          level: float = stats.LEVEL,
                          groups: Groups | None = None) -> pd.DataFrame:
    """Every patch model against its full model on every test pair both were scored on (seen,
    unseen, domain-confounded, other datasets), plus (``pooled``) one row per patch model for
    the mean over ``generators`` of ``dataset`` (``generator == "pooled"``; the primary
    contrast again, now inside a family). Intervals as in :func:`primary_contrast`;
    ``setting``: one setting, or None for every setting of the table (each compared within
    itself).

    ``p``: two-sided, from the same t (or, image-only, normal) statistic; ``p_holm``:
    :func:`stats.holm` within each family, the rows sharing a value of column ``family``
    (None: the whole table is one family). ``verdict`` reads the unadjusted interval;
    ``verdict_holm`` is "patch better" / "full better" by the sign of ``diff`` only when
    ``p_holm < alpha``, else "no difference". Columns: :data:`SECONDARY_COLUMNS`."""
    t = _of_mode(scores, mode)
    settings = [one_setting(t, setting)[1]] if setting is not None or "setting" not in t \
        else list(dict.fromkeys(t["setting"].fillna("")))
    rows = []
    for st in settings:
        ts = one_setting(t, st)[0]
        fits = _fits(ts, n_boot, seed, _normalise_groups(groups, ts))
        for label, ref in _pairs(fits, full):
            p, f = fits[label], fits[ref]
            head = {"setting": st, "model": label, "full_model": ref,
                    "field_fraction": p.info["field_fraction"]}
            for pair in p.auc:
                if pair in f.auc:
                    rows.append({**head, "dataset": pair[0], "generator": pair[1],
                                 "generators": pair[1],
                                 "seen": "/".join(pair) == p.info["train_set"],
                                 **_contrast_row(p, f, [pair], level)})
            pool = [(dataset, g) for g in generators]
            if pooled and all(q in p.auc and q in f.auc for q in pool):
                rows.append({**head, "dataset": dataset, "generator": "pooled",
                             "generators": ",".join(generators), "seen": False,
                             **_contrast_row(p, f, pool, level)})
    out = pd.DataFrame(rows, columns=[c for c in SECONDARY_COLUMNS
                                      if c not in ("p_holm", "verdict_holm")])
    return _with_holm(out, family, alpha)


def _with_holm(table: pd.DataFrame, family: str | None, alpha: float) -> pd.DataFrame:
    if family is not None and family not in table.columns:
        raise ValueError(f"family column {family!r} not in {list(table.columns)}")
    table = table.copy()
    table["p_holm"] = np.nan
    keys = table[family] if family is not None else pd.Series(0, index=table.index)
    for _, idx in table.groupby(keys, sort=False).groups.items():
        table.loc[idx, "p_holm"] = stats.holm(table.loc[idx, "p"].to_numpy())
    sig = table["p_holm"] < alpha
    table["verdict_holm"] = np.where(
        table["verdict"] == UNDER_TRAINED, UNDER_TRAINED,
        np.where(sig & (table["diff"] > 0), stats.VERDICTS[0],
                 np.where(sig & (table["diff"] < 0), stats.VERDICTS[2],
                          stats.VERDICTS[1])))
    return table[SECONDARY_COLUMNS]
