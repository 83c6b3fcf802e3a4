"""Every notebook runs headless through papermill in smoke mode and writes what it promises."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from patchforensics import paths
from patchforensics.notebooks import run_notebook

pytestmark = pytest.mark.slow


def assert_no_errors(executed) -> None:
    nb = json.loads(executed.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
              if o["output_type"] == "error"]
    assert not errors, errors


def test_01_preprocessing_smoke(project_env, tmp_path):
    out = run_notebook("01_preprocessing", tmp_path, {"smoke": True, "interactive": False})
    assert_no_errors(out)
    figures = paths.figures_dir()
    for dataset in ("celeba", "olivetti"):
        assert (figures / f"01_real_{dataset}_smoke32.png").stat().st_size > 1000
        assert (figures / f"01_real_{dataset}_smoke32.pdf").exists()
    table = pd.read_csv(paths.tables_dir() / "01_audit_demo_smoke32.csv", index_col=0)
    assert table["clean"].tolist() == [True, False]
    assert "format" in table["facts"].iloc[1]
    assert (paths.world_dir("smoke32") / "manifest.json").exists()


def test_02_train_classifiers_smoke(project_env, tmp_path):
    out = run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    assert_no_errors(out)
    summary = pd.read_csv(paths.tables_dir() / "02_train_summary_smoke32.csv", index_col=0)
    # The smoke profile: every run of both settings, second seeds of block1 and the full model
    # (primary only), every model at one input size (like for like, as the default profile).
    runs = set(zip(summary.index, summary["seed"], summary["setting"], strict=True))
    models = ("xception_block1", "xception_block2", "xception_full")
    assert runs == ({(m, 0, "samples_inversions") for m in models}
                    | {(m, 1, "samples_inversions") for m in ("xception_block1", "xception_full")}
                    | {(m, 0, "samples") for m in models})
    assert set(summary["load_size"]) == {64}
    ff = summary["field_fraction"]
    assert (ff[summary.index != "xception_full"] < 1).all() and (ff["xception_full"] == 1).all()
    assert {"epochs", "stopped", "patience", "load_size", "crop"} <= set(summary.columns)
    assert (summary["epochs"] <= 2).all()  # the smoke cap
    assert (paths.figures_dir() / "02_training_curves_smoke32.png").exists()
    root = paths.checkpoints_dir() / "classifiers" / "smoke32" / "celeba_dcgan"
    assert len(list((root / "samples_inversions").rglob("best.pt"))) == 5
    assert len(list((root / "samples").rglob("best.pt"))) == 3


def test_03_evaluate_generalization_smoke(project_env, tmp_path):
    # Notebook 03 reads notebook 02's runs; 02 skips its finished runs when they exist.
    run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    out = run_notebook("03_evaluate_generalization", tmp_path,
                       {"smoke": True, "interactive": False})
    assert_no_errors(out)
    table = pd.read_csv(paths.tables_dir() / "cross_generator_smoke32.csv")
    gens = {"celeba": {"dcgan", "upconv", "vae", "gmm", "digiface_dcgan"},
            "olivetti": {"dcgan", "gmm", "criminai_vae"}}
    assert {d: set(g["generator"]) for d, g in table.groupby("dataset")} == gens
    assert set(table["label"]) == {"xception_block1", "xception_block2", "xception_full"}
    assert len(table) == 8 * 8 * 3 and table["seen"].sum() == 8 * 3  # runs x sets x modes
    assert table["ap"].between(0, 1).all() and table["threshold"].between(0, 1).all()
    assert {"field_fraction", "setting", "seed", "auc_ci_low", "auc_ci_high", "n_tied"} <= \
        set(table.columns)
    assert (table["auc_ci_low"] <= table["auc_ci_high"]).all()
    assert {"input_size", "epochs", "stopped_by", "val_auc_ci_low", "adequate"} <= \
        set(table.columns)
    assert set(table["input_size"]) == {64} and set(table["stopped_by"]) <= {"rule", "cap"}
    verdicts = {"patch better", "no difference", "full better", "not tested: under-trained"}
    cmp = pd.read_csv(paths.tables_dir() / "secondary_comparisons_smoke32.csv")
    assert set(cmp["verdict_holm"]) <= verdicts and (cmp["p_holm"] >= cmp["p"] - 1e-12).all()
    assert set(cmp["model"]) == {"xception_block1", "xception_block2"}
    assert (cmp["ci_low"] <= cmp["ci_high"]).all()
    primary = pd.read_csv(paths.tables_dir() / "primary_contrast_smoke32.csv")
    assert {"model", "diff", "ci_low", "ci_high", "method", "n_seeds", "verdict"} <= \
        set(primary.columns)
    assert set(primary["model"]) == {"xception_block1", "xception_block2"}
    assert set(primary["generators"]) == {"upconv,vae,gmm"}
    # block1 and the full model have two seeds in smoke: seeds are the unit; block2 has one
    method = primary.set_index("model")["method"]
    assert method["xception_block1"] != method["xception_block2"]
    # a verdict only where every compared run passes adequacy
    all_good = primary["adequate_runs"].map(lambda r: r.split("/")[0] == r.split("/")[1])
    assert ((primary["verdict"] == "not tested: under-trained") == ~all_good).all(), primary
    assert (paths.tables_dir() / "shortcut_probe_smoke32.csv").exists()
    robust = pd.read_csv(paths.tables_dir() / "robustness_smoke32.csv")
    assert set(robust["seed"]) == {0, 1} and set(robust["kind"]) == {"none", "jpeg", "blur",
                                                                      "resize"}
    for name in ("patch_vs_full", "ap_by_depth", "reliability", "heatmap_extremes",
                 "heatmap_average",
                 "heatmap_average_relative",
                 "robustness"):
        assert (paths.figures_dir() / f"03_{name}_smoke32.png").stat().st_size > 1000, name
    runs = paths.checkpoints_dir() / "classifiers" / "smoke32" / "celeba_dcgan" / \
        "samples_inversions"
    assert (runs / "xception_block1_in64_seed1" / "done.json").exists()
    assert (runs / "xception_block2_in64_seed0" / "calibration.json").exists()


def test_04_face_parts_smoke(project_env, tmp_path):
    run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    out = run_notebook("04_face_parts", tmp_path, {"smoke": True, "interactive": False})
    assert_no_errors(out)
    counts = pd.read_csv(paths.tables_dir() / "top_patch_counts_smoke32.csv")
    assert set(counts["model"]) == {"xception_block1", "xception_block2"}
    assert set(counts["generator"]) == {"dcgan", "upconv", "vae", "gmm", "digiface_dcgan"}
    assert len(counts) == 2 * 5 * 8  # models x generators x parts
    # fractional counts: each model and generator's top patches sum to the images analysed
    sums = counts.groupby(["model", "generator"])["top"].sum()
    assert np.allclose(sums, sums.round()), sums
    enrich = pd.read_csv(paths.tables_dir() / "top_patch_enrichment_smoke32.csv")
    assert {"enrichment", "ci_low", "ci_high"} <= set(enrich.columns)
    faces = pd.read_csv(paths.tables_dir() / "face_parsing_smoke32.csv", index_col="set")
    assert faces.loc["real", "faces_found"] >= 0.75 * faces.loc["real", "images"]
    for name in ("label_maps", "top_patch_hist_xception_block1", "top_patch_grid",
                 "patch_panel_real", "patch_panel_dcgan"):
        assert (paths.figures_dir() / f"04_{name}_smoke32.png").stat().st_size > 1000, name


def test_05_finetune_generator_smoke(project_env, tmp_path):
    run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    out = run_notebook("05_finetune_generator", tmp_path, {"smoke": True, "interactive": False})
    assert_no_errors(out)
    summary = pd.read_csv(paths.tables_dir() / "finetune_summary_smoke32.csv",
                          index_col="quantity")
    assert summary["value"].notna().all()
    for who in ("frozen C", "fresh C", "control C"):  # the control makes it a comparison
        assert f"{who}: AUC on finetuned G test fakes" in summary.index, who
        assert f"{who}: AUC 95% low on control G test fakes" in summary.index, who
    enrich = pd.read_csv(paths.tables_dir() / "finetune_top_patch_enrichment_smoke32.csv")
    assert set(enrich["model"]) == {"original G, frozen C", "finetuned G, frozen C",
                                    "finetuned G, fresh C"}
    folder = (paths.world_dir("smoke32") / "finetuned" / "fake" / "celeba"
              / "dcgan_ft_xception_block2_lam1_seed0")
    assert len(list((folder / "test").glob("*.png"))) == 20
    for name in ("finetune_log", "samples", "top_patch_hist"):
        assert (paths.figures_dir() / f"05_{name}_smoke32.png").stat().st_size > 1000, name


def test_06_exaggerate_fakeness_smoke(project_env, tmp_path):
    run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    out = run_notebook("06_exaggerate_fakeness", tmp_path, {"smoke": True, "interactive": False})
    assert_no_errors(out)
    scores = pd.read_csv(paths.tables_dir() / "exaggerate_scores_smoke32.csv")
    # The smoke generators draw no faces, so the region-restricted shifts are skipped (said).
    assert set(scores["shift"]) == {"all_lam1"}  # the primary, unweighted objective
    assert len(scores) == scores["shift"].nunique() * 9 and scores["score"].between(0, 1).all()
    change = pd.read_csv(paths.tables_dir() / "exaggerate_part_change_smoke32.csv")
    assert "mean_change" in change.columns
    for name in ("score_along_shift", "strips_all_lam1"):
        assert (paths.figures_dir() / f"06_{name}_smoke32.png").stat().st_size > 1000, name


def test_07_manipulated_faces_smoke(project_env, tmp_path):
    run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    out = run_notebook("07_manipulated_faces", tmp_path, {"smoke": True, "interactive": False})
    assert_no_errors(out)
    tables = paths.tables_dir()
    methods = {"faceswap", "deepfake", "reenact", "neuraltex"}
    loc = pd.read_csv(tables / "localization_smoke32.csv")
    assert set(loc["manipulation"]) == methods
    assert set(loc["localizer"]) == {"patch", "gradcam", "gradient", "random"}
    assert set(loc["control"]) == {"none", "shuffled_masks", "random_weights"}  # sanity controls
    cam = loc[loc["localizer"] == "gradcam"]
    assert set(cam["layer"]) == {"block1"} and set(cam["grid"]) == {"7x7"}  # >= 6 x 6 at 32 px
    adequacy = pd.read_csv(tables / "manipulation_adequacy_smoke32.csv")
    assert len(adequacy) == 8 and not adequacy["adequate"].any()  # 3 steps learn nothing
    cmp = pd.read_csv(tables / "07_localization_comparisons_smoke32.csv")
    assert set(cmp["manipulation"]) == methods and (cmp["metric"] == "pixel_auc").all()
    assert set(cmp["verdict"]) == {"not tested: under-trained"}  # never a verdict untrained
    for col in ("pointing_game", "pixel_auc", "mass_inside"):
        assert {col, f"{col}_low", f"{col}_high"} <= set(loc.columns)
        t = loc[[f"{col}_low", col, f"{col}_high"]].dropna()  # NaN: no heat on any image
        assert (t.iloc[:, 0] <= t.iloc[:, 1] + 1e-12).all() and \
            (t.iloc[:, 1] <= t.iloc[:, 2] + 1e-12).all(), col
    cross = pd.read_csv(tables / "manipulation_cross_smoke32.csv")
    assert set(cross["train"]) == methods and set(cross["test"]) == methods
    modes = pd.read_csv(tables / "07_score_modes_smoke32.csv")
    assert {"mean_softmax", "mean_logit", "vote", "topk"} <= set(modes["mode"])
    assert "dcgan" in set(modes["test"])  # whole-image fakes, notebook 02's models
    for name in ("manipulation_examples", "localization_examples", "localization_pixel_auc",
                 "localization_pointing_game"):
        assert (paths.figures_dir() / f"07_{name}_smoke32.png").stat().st_size > 1000, name


def test_own_data_through_notebooks_02_to_04(project_env, tmp_path):
    """A data root `import` made, with names the embedded world does not have, goes through
    notebooks 02-04 (smoke); `train` on the command line files its run where they look."""
    from patchforensics import cli, runs
    from patchforensics.config import WorldConfig
    from patchforensics.embedded import build_real_world
    from patchforensics.world import build_fake_world

    cfg = WorldConfig.smoke_default()
    build_real_world(cfg, progress=False)  # both cached after notebook 01's test
    build_fake_world(cfg, progress=False)
    world = paths.world_dir(cfg.name)
    own = tmp_path / "mine"
    for src, dst in (("real/celeba", "real/stars"), ("fake/celeba/dcgan", "fake/stars/ganx"),
                     ("fake/celeba/upconv", "fake/stars/ganz")):
        assert cli.main(["import", str(world / src), str(own / dst), "--size", "32",
                         "--quiet"]) == 0
    params = {"smoke": True, "interactive": False, "data_root": str(own), "dataset": "stars",
              "generator": "ganx"}
    for nb in ("02_train_classifiers", "03_evaluate_generalization", "04_face_parts"):
        assert_no_errors(run_notebook(nb, tmp_path / nb, params))
    summary = pd.read_csv(paths.tables_dir() / "02_train_summary_mine.csv", index_col=0)
    assert set(summary["setting"]) == {"samples"}  # no inversions in this root: samples only
    table = pd.read_csv(paths.tables_dir() / "cross_generator_mine.csv")
    assert set(table["generator"]) == {"ganx", "ganz"} and set(table["dataset"]) == {"stars"}
    assert (paths.tables_dir() / "top_patch_counts_mine.csv").exists()
    # The command line's default run folder is beside the notebooks' runs: one search finds all.
    rc = cli.main(["train", "--real", str(own / "real/stars"), "--fake",
                   str(own / "fake/stars/ganx"), "--depth", "3", "--epochs", "1",
                   "--steps-per-epoch", "2", "--batch-size", "8", "--quiet"])
    assert rc == 0
    found = runs.find_runs(runs.run_root("mine", "stars", "ganx", "samples"))
    assert set(found) == {"xception_block1", "xception_block2", "xception_block3",
                          "xception_full"}


NEEDED = {"cross_generator": "03_evaluate_generalization",
          "primary_contrast": "03_evaluate_generalization",
          "secondary_comparisons": "03_evaluate_generalization",
          "top_patch_counts": "04_face_parts",
          "finetune_summary": "05_finetune_generator",
          "exaggerate_scores": "06_exaggerate_fakeness",
          "localization": "07_manipulated_faces",
          "manipulation_cross": "07_manipulated_faces",
          "07_localization_comparisons": "07_manipulated_faces"}


def test_smoke_tables_have_the_reference_shape_and_the_report_is_written(project_env, tmp_path):
    from patchforensics.report import shape_differences, table_path, write_report

    # The smoke notebook tests above write these tables; any missing ones are made here.
    missing = [nb for t, nb in NEEDED.items() if not table_path(t, "smoke32").exists()]
    if missing:
        run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    for nb in missing:
        run_notebook(nb, tmp_path, {"smoke": True, "interactive": False})
    assert shape_differences("smoke32") == []
    text = write_report(smoke=True).read_text()
    for part in ("Cross-generator AUC", "The primary contrast", "Holm-adjusted", "Run manifest",
                 "git commit", "CPU ",
                 "real/celeba", "figures/03_ap_by_depth_smoke32.png",
                 "figures/03_patch_vs_full_smoke32.png"):
        assert part in text, part


def test_compare_reference_reports_exactly_the_changed_numbers(tmp_path):
    import shutil

    from patchforensics.report import compare_reference

    for name in NEEDED:
        shutil.copy(paths.reference_dir() / f"{name}.csv", tmp_path / f"{name}.csv")
    assert compare_reference(tables=tmp_path).empty
    t = pd.read_csv(tmp_path / "cross_generator.csv")
    t.loc[3, "ap"] = t.loc[3, "ap"] - 0.5 if t.loc[3, "ap"] > 0.5 else t.loc[3, "ap"] + 0.5
    t.to_csv(tmp_path / "cross_generator.csv", index=False)
    s = pd.read_csv(tmp_path / "finetune_summary.csv").iloc[1:]  # a quantity goes missing
    s.to_csv(tmp_path / "finetune_summary.csv", index=False)
    diff = compare_reference(tables=tmp_path)
    assert len(diff) == 2
    assert set(diff["table"]) == {"cross_generator", "finetune_summary"}
    assert diff.set_index("table").loc["cross_generator", "column"] == "ap"
