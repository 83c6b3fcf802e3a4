"""``results/REPORT.md`` (written after every ``reproduce``) and the comparison of a run's key
tables with ``results/reference/``.

The reference holds the key tables of a default run on the project's 2-core CPU machine
(``REFERENCE_TABLES``) and, separately, the paper's own numbers read off its figures
(``paper_*.csv``). :func:`compare_reference` prints where a new run differs beyond tolerance,
:func:`compare_runs` where two runs differ from each other (same tolerances);
:func:`shape_differences` checks that a run's tables have the reference's columns and key values
(a smoke run has fewer models, so its keys must be a subset).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths
from .config import world_config
from .embedded import read_manifest
from .evaluate import table_name
from .findings import ap_pivot, paper_ap_by_block, reading
from .images import atomic_write_text
from .protocol import PRIMARY_MODE, PRIMARY_SETTING
from .provenance import run_record

# table -> (key columns, {numeric column: absolute tolerance})
REFERENCE_TABLES: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "cross_generator": (("label", "setting", "seed", "dataset", "generator", "mode"),
                        {"ap": 0.1, "auc": 0.1, "acc": 0.1, "fake_acc": 0.15}),
    "primary_contrast": (("model", "setting"), {"diff": 0.1}),
    "secondary_comparisons": (("model", "setting", "dataset", "generator"), {"diff": 0.1}),
    "top_patch_counts": (("model", "generator", "part"), {"top": 15.0, "random": 15.0}),
    "finetune_summary": (("quantity",), {"value": 0.15}),
    "exaggerate_scores": (("shift", "alpha"), {"score": 0.15}),
    "localization": (("localizer", "model", "manipulation", "images", "control"),
                     {"pointing_game": 0.2, "pixel_auc": 0.1, "mass_inside": 0.1}),
    "manipulation_cross": (("train", "model", "test"), {"auc": 0.1}),
    "07_localization_comparisons": (("manipulation", "metric"), {"diff": 0.1}),
}
# Key columns a newer table has and an older reference lacks: the reference's rows are read as
# this value (the localization table's sanity controls, issue 24: "none" is the plain row).
KEY_DEFAULTS = {"control": "none"}
# Key columns whose values a smoke run may add: it trains a second seed and the samples-only
# setting (to run those code paths) that the default profile leaves to the full one.
SHAPE_FREE = frozenset({"seed", "setting"})
# Figures of the report, in order (``<name>_<world>.png`` in results/figures, when present).
FIGURES = (("03_patch_vs_full", "AUC(patch) - AUC(full) per unseen generator (notebook 03)"),
           ("03_ap_by_depth", "AP against field fraction, ours and the paper's (notebook 03)"),
           ("03_heatmap_extremes", "Easiest and hardest test images with their heatmaps"),
           ("03_heatmap_average_relative", "Average heatmaps per generator (relative evidence)"),
           ("03_robustness", "AP under JPEG, blur and resizing over training seeds"),
           ("04_top_patch_hist_xception_block2", "Top vs. random patches per face part (04)"),
           ("04_top_patch_grid", "Top patches grouped by face part"),
           ("05_finetune_log", "Finetuning the generator against the frozen classifier (05)"),
           ("05_top_patch_hist", "Top patches before and after finetuning"),
           ("06_score_along_shift", "The classifier's score along the latent shift (06)"),
           ("06_strips_all_lam1", "Exaggeration strips G(z - a w), G(z), G(z + a w)"),
           ("07_manipulation_examples", "The manipulations with their masks (07)"),
           ("07_localization_pointing_game", "Pointing game: patch maps vs. Grad-CAM (07)"),
           ("07_localization_examples", "Patch maps, Grad-CAM and gradients against masks"))


def table_path(name: str, world: str, folder: Path | None = None) -> Path:

    return (folder or paths.tables_dir()) / f"{table_name(name, world)}.csv"


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A pandas frame as a GitHub markdown table (index included when named)."""
    f = frame.reset_index() if frame.index.name or any(frame.index.names) else frame

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(map(str, f.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in f.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in f.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _done_records(folder: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(folder.glob("*.done.json")):
        try:
            out.append(json.loads(f.read_text()))
        except ValueError:
            continue
    return out


def write_report(*, smoke: bool = False, world_seed: int = 0) -> Path:
    """Write ``results/REPORT.md`` from what the last run left in ``results/`` (tables,
    figures, the notebooks' done records) and the world's manifest: the main figures and tables
    and the run manifest (commit, package versions, seeds, data fingerprints, timings)."""

    cfg = world_config(smoke=smoke, seed=world_seed)
    results = paths.results_dir()
    rec = run_record()
    done = _done_records(results / "notebooks")
    lines = [f"# patchforensics: report of the last {'smoke' if smoke else 'default'} run",
             "", f"World `{cfg.name}`; written {rec['time_utc']} UTC. Regenerated by "
             "`make reproduce` (`make smoke`); the numbers below are this run's own.", ""]
    lines += _cross_generator_section(cfg.name)
    for fig, caption in FIGURES:
        png = results / "figures" / f"{fig}_{cfg.name}.png"
        if png.exists():
            lines += [f"### {caption}", "", f"![{caption}](figures/{png.name})", ""]
    for name, title in (("finetune_summary", "Finetuning against the classifier"),
                        ("calibration", "Calibration (validation split)")):
        path = table_path(name, cfg.name)
        if path.exists():
            lines += [f"## {title}", "", markdown_table(pd.read_csv(path)), ""]
    path = table_path("exaggerate_scores", cfg.name)
    if path.exists():
        t = pd.read_csv(path).pivot_table(index="alpha", columns="shift", values="score",
                                          sort=False)
        lines += ["## Classifier score along the exaggeration shift", "", markdown_table(t), ""]
    lines += _manifest_section(cfg, rec, done)
    report = results / "REPORT.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def _cross_generator_section(world: str) -> list[str]:
    """The report's cross-generator part: the AUC pivot, the reading, the primary
    contrast and the secondary comparisons (empty without the table)."""
    cross = table_path("cross_generator", world)
    if not cross.exists():
        return []
    lines: list[str] = []
    t = pd.read_csv(cross)
    comparison, unseen, primary = (
        pd.read_csv(f) if f.exists() else None
        for f in (table_path(n, world) for n in ("secondary_comparisons", "unseen_auc",
                                                 "primary_contrast")))
    lines += ["## Cross-generator AUC (fake = positive, primary setting and score)", "",
              markdown_table(ap_pivot(t, mode=PRIMARY_MODE, metric="auc",
                                      setting=PRIMARY_SETTING).rename_axis("model")), "",
              reading(t, mode=PRIMARY_MODE, paper=_paper(), comparison=comparison,
                      summary=unseen, setting=PRIMARY_SETTING, primary=primary), ""]
    if primary is not None:
        lines += ["## The primary contrast: AUC(patch) - AUC(full), seeds as the unit "
                  "(pre-registered)", "", markdown_table(primary), ""]
    if comparison is not None:
        cols = [c for c in ("model", "field_fraction", "dataset", "generator", "diff",
                            "ci_low", "ci_high", "p_holm", "verdict_holm")
                if c in comparison.columns]
        lines += ["## Secondary: AUC(patch) - AUC(full) per test pair (Holm-adjusted)", "",
                  markdown_table(comparison[cols]), ""]
    return lines


def _manifest_section(cfg: Any, rec: dict[str, Any], done: list[dict[str, Any]]
                      ) -> list[str]:
    """The report's run manifest: commit, packages, the data's fingerprints and the
    notebooks' parameters and timings."""
    lines = ["## Run manifest", "", f"- git commit: `{rec['git'].get('commit')}`"
             + (" (with uncommitted changes)" if rec["git"].get("dirty") else ""),
             "- packages: " + ", ".join(f"{k} {v}" for k, v in rec["packages"].items() if v),
             f"- python {rec['python']}, {rec['platform']}; CPU {rec.get('cpu', '?')}"]
    manifest = read_manifest(paths.world_dir(cfg.name)) if paths.world_dir(cfg.name).exists() \
        else {"sets": {}}
    if manifest["sets"]:
        lines += ["- data (set: fingerprint, train/val/test counts): " + "; ".join(
            f"`{k}` {v.get('fingerprint', '')} "
            f"({'/'.join(str(v['splits'][s]['count']) for s in ('train', 'val', 'test'))})"
            for k, v in sorted(manifest["sets"].items()))]
    lines += [f"- world seed {cfg.seed}; notebook parameters and timings:"]
    lines += [f"  - {d['notebook']}: {d['seconds']:.0f} s, parameters {d['parameters']}"
              for d in done]
    return lines


def _paper() -> pd.DataFrame | None:

    try:
        return paper_ap_by_block()
    except FileNotFoundError:
        return None


def compare_reference(*, world: str = "default64", tables: Path | None = None,
                      reference: Path | None = None) -> pd.DataFrame:
    """Every numeric cell of the reference tables whose value in a run's table differs by more
    than its tolerance (``REFERENCE_TABLES``), and every reference row the run lacks: one row per
    difference (``table``, ``key``, ``column``, ``reference``, ``run``, ``tolerance``)."""
    reference = reference or paths.reference_dir()
    pairs = {name: (reference / f"{name}.csv", table_path(name, world, tables))
             for name in REFERENCE_TABLES if (reference / f"{name}.csv").exists()}
    if pairs and not any(run.exists() for _, run in pairs.values()):
        where = tables or paths.tables_dir()
        raise ValueError(f"{where}: no tables of world {world} to compare with {reference} "
                         "(run `patchforensics reproduce` first, or pass --world)")
    rows = []
    for name, (ref_path, run_path) in pairs.items():
        if not run_path.exists():
            rows.append({"table": name, "key": "", "column": "", "reference": "present",
                         "run": "missing", "tolerance": ""})
            continue
        rows += _table_differences(name, ref_path, run_path, both_ways=False)
    return pd.DataFrame(rows, columns=["table", "key", "column", "reference", "run",
                                       "tolerance"])


def _table_differences(name: str, a_path: Path, b_path: Path, *,
                       both_ways: bool) -> list[dict[str, Any]]:
    """Rows of ``a`` missing from ``b`` (and, ``both_ways``, of ``b`` from ``a``) and numeric
    cells differing beyond ``REFERENCE_TABLES``' tolerance, as ``(table, key, column,
    reference, run, tolerance)`` dicts (``reference`` = a, ``run`` = b)."""
    keys, tols = REFERENCE_TABLES[name]
    a, b = (_with_key_defaults(pd.read_csv(f), keys).set_index(list(keys))
            for f in (a_path, b_path))
    rows = []
    for key in a.index:
        if key not in b.index:
            rows.append({"table": name, "key": str(key), "column": "", "reference": "row",
                         "run": "missing", "tolerance": ""})
            continue
        for col, tol in tols.items():
            x, y = float(a.loc[key, col]), float(b.loc[key, col])
            if not (abs(x - y) <= tol or (math.isnan(x) and math.isnan(y))):
                rows.append({"table": name, "key": str(key), "column": col, "reference": x,
                             "run": y, "tolerance": tol})
    if both_ways:
        rows += [{"table": name, "key": str(key), "column": "", "reference": "missing",
                  "run": "row", "tolerance": ""} for key in b.index if key not in a.index]
    return rows


def _tables_of(folder: Path) -> dict[str, Path]:
    """``{file name: path}`` of the comparable tables (``REFERENCE_TABLES``, any world) in a
    results folder (its ``tables/``) or a tables folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such results folder")
    where = folder / "tables" if (folder / "tables").is_dir() else folder
    return {p.name: p for p in sorted(where.glob("*.csv"))
            if any(p.stem == n or p.stem.startswith(f"{n}_") for n in REFERENCE_TABLES)}


def compare_runs(a: str | Path, b: str | Path) -> pd.DataFrame:
    """How two runs' key tables differ, with ``compare_reference``'s tolerances: ``a`` and
    ``b`` are results folders (holding ``tables/``) or tables folders; tables are paired by
    file name (``cross_generator_smoke32.csv`` with its namesake). One row per difference:
    ``table`` (file name), ``key``, ``column``, ``a``, ``b``, ``tolerance``; a row only one run
    has shows ``row``/``missing``, a table only one has ``present``/``missing``. Raises
    ``ValueError`` when the folders have no table in common (nothing to compare)."""
    ta, tb = _tables_of(Path(a)), _tables_of(Path(b))
    common = sorted(set(ta) & set(tb))
    if not common:
        raise ValueError(f"{a} and {b}: no table in common to compare ({len(ta)} and "
                         f"{len(tb)} key table(s): {', '.join(sorted(ta)) or 'none'} / "
                         f"{', '.join(sorted(tb)) or 'none'})")
    rows = []
    for file in sorted(set(ta) | set(tb)):
        name = next(n for n in sorted(REFERENCE_TABLES, key=len, reverse=True)
                    if file[:-4] == n or file.startswith(f"{n}_"))
        if file not in common:
            rows.append({"table": file, "key": "", "column": "",
                         "reference": "present" if file in ta else "missing",
                         "run": "present" if file in tb else "missing", "tolerance": ""})
            continue
        rows += [{**r, "table": file}
                 for r in _table_differences(name, ta[file], tb[file], both_ways=True)]
    return pd.DataFrame(rows, columns=["table", "key", "column", "reference", "run",
                                       "tolerance"]).rename(columns={"reference": "a",
                                                                     "run": "b"})


def _with_key_defaults(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with each key column it lacks filled from :data:`KEY_DEFAULTS`."""
    missing = {k: KEY_DEFAULTS[k] for k in keys if k not in frame and k in KEY_DEFAULTS}
    return frame.assign(**missing) if missing else frame


def shape_differences(world: str, *, tables: Path | None = None,
                      reference: Path | None = None) -> list[str]:
    """How a run's key tables differ in *shape* from the reference: columns of the reference
    the run lacks (a run may add columns: a newer version records more), or key values the
    reference does not have (a smoke run's models and shifts are a subset of a default run's,
    so only extra values count). Empty list: same shape."""
    reference = reference or paths.reference_dir()
    problems = []
    for name, (keys, _) in REFERENCE_TABLES.items():
        ref_path, run_path = reference / f"{name}.csv", table_path(name, world, tables)
        if not ref_path.exists() or not run_path.exists():
            problems.append(f"{name}: missing ({ref_path if not ref_path.exists() else run_path})")
            continue
        ref, run = (_with_key_defaults(pd.read_csv(f), keys) for f in (ref_path, run_path))
        lost = [c for c in ref.columns if c not in run.columns]
        if lost:
            problems.append(f"{name}: the run has no columns {lost} of the reference")
            continue
        for key in keys:
            if key in SHAPE_FREE:
                continue
            extra = set(run[key].astype(str)) - set(ref[key].astype(str))
            if extra:
                problems.append(f"{name}: {key} values not in the reference: {sorted(extra)}")
    return problems
