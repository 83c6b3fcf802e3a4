"""Reading the original authors' checkpoints, checked against their own code's output.

``tests/fixtures/original-xception-block2/`` was written by the paper's code (chail/patch-forensics,
see its README there): a trained xception_block2 ``bestval_net_D.pth``, its ``opt.yml``, 24
synthetic 128 px test images and, per image, the P(fake) its ``test.py`` computed in its three
score modes. Fixed data from outside the project: never regenerate it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from patchforensics import paths
from patchforensics.cli import main
from patchforensics.models import ModelConfig, build_model
from patchforensics.original import read_options, to_original, to_ours
from patchforensics.scoring import evaluate, score_files

FIXTURE = Path(__file__).parent / "fixtures" / "original-xception-block2"
CKPT = FIXTURE / "bestval_net_D.pth"
# our score mode -> the original's column (test.py: after_softmax is its default)
COLUMNS = {"mean_softmax": "p_fake_after_softmax", "mean_logit": "p_fake_before_softmax",
           "vote": "p_fake_vote"}


@pytest.fixture(scope="module")
def theirs() -> pd.DataFrame:
    table = pd.read_csv(FIXTURE / "original_predictions.csv")
    assert len(table) == 24 and set(table["set"]) == {"real", "fake"}
    return table


@pytest.fixture(scope="module")
def split_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's images as a real/ and a fake/ folder (as ``evaluate`` takes them)."""
    out = tmp_path_factory.mktemp("original_sets")
    for f in sorted((FIXTURE / "images").glob("*.png")):
        (out / f.name.split("_")[0]).mkdir(exist_ok=True)
        shutil.copy(f, out / f.name.split("_")[0] / f.name)
    return out


@pytest.mark.parametrize("mode", list(COLUMNS))
def test_score_is_the_originals_p_fake_per_image(mode, theirs, project_env, capsys):
    ours = score_files(CKPT, [FIXTURE / "images"], mode=mode, progress=False)
    assert "output 0 = fake (fake_class_id 0, from opt.yml)" in capsys.readouterr().err
    ours["name"] = ours["path"].map(lambda p: Path(p).name)
    both = theirs.merge(ours, on="name", validate="one_to_one")
    assert len(both) == 24 and (both["error"] == "").all()
    diff = (both[COLUMNS[mode]] - both["prob"]).abs()
    assert diff.max() < 1e-3, both.loc[diff.idxmax(), ["name", COLUMNS[mode], "prob"]]
    # no calibration data is known for a foreign checkpoint: prob_fake is prob itself
    np.testing.assert_allclose(both["prob_fake"], both["prob"])


def test_evaluate_gives_the_originals_auc_and_ap(theirs, split_images, project_env, tmp_path):
    table = evaluate(CKPT, split_images / "real", {"synthetic": split_images / "fake"},
                     modes=list(COLUMNS))
    y = (theirs["set"] == "fake").to_numpy()
    for row in table.itertuples():
        p = theirs[COLUMNS[row.mode]].to_numpy()
        assert row.auc == pytest.approx(roc_auc_score(y, p), abs=1e-9), row.mode
        assert row.ap == pytest.approx(average_precision_score(y, p), abs=1e-6), row.mode
        assert row.ap_real_positive == pytest.approx(average_precision_score(~y, 1 - p),
                                                     abs=1e-6), row.mode
    # the same through the command line
    out = tmp_path / "t.csv"
    assert main(["evaluate", str(CKPT), "--real-images", str(split_images / "real"),
                 "--fake-images", f"synthetic={split_images / 'fake'}", "--out", str(out),
                 "--modes", "mean_softmax"]) == 0
    auc = pd.read_csv(out)["auc"].iloc[0]
    assert auc == pytest.approx(roc_auc_score(y, theirs["p_fake_after_softmax"]), abs=1e-9)


def test_no_cache_beside_the_users_checkpoint(tmp_path, project_env, split_images):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("bestval_net_D.pth", "opt.yml"):
        shutil.copy(FIXTURE / name, mine / name)
    before = sorted(p.name for p in mine.rglob("*"))
    score_files(mine / "bestval_net_D.pth", [FIXTURE / "images" / "fake_000.png"],
                progress=False)
    evaluate(mine / "bestval_net_D.pth", split_images / "real",
             {"synthetic": split_images / "fake"}, modes=["mean_softmax"])
    assert sorted(p.name for p in mine.rglob("*")) == before
    assert list((paths.cache_dir() / "original").rglob("*.npy"))  # the maps went here


def test_without_options_file_the_class_order_is_assumed_and_said(tmp_path, project_env,
                                                                 theirs, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(CKPT, bare / "bestval_net_D.pth")
    image = [FIXTURE / "images" / "fake_000.png"]
    default = score_files(bare / "bestval_net_D.pth", image, progress=False)
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "fake_class_id 0, the original's default" in said[0]
    assert "opt.yml" in said[0] and "--fake-class-id" in said[0]
    want = theirs.set_index("name").loc["fake_000.png", "p_fake_after_softmax"]
    assert default["prob"].iloc[0] == pytest.approx(want, abs=1e-3)
    # the other order, given: every patch's two logits swap, so P(fake) becomes 1 - P(fake)
    flipped = score_files(bare / "bestval_net_D.pth", image, progress=False, fake_class_id=1)
    assert "fake_class_id 1, given" in capsys.readouterr().err
    assert flipped["prob"].iloc[0] == pytest.approx(1 - want, abs=1e-3)


def test_options_files_are_read_in_both_formats(tmp_path):
    assert read_options(FIXTURE / "bestval_net_D.pth").fake_class_id == 0
    assert read_options(FIXTURE / "bestval_net_D.pth").load_size == 299
    assert read_options(tmp_path / "x.pth").source == ""
    # opt.txt: the original's older format, with default notes after the value
    (tmp_path / "opt.txt").write_text(
        "----------------- Options ---------------\n"
        "             fake_class_id: 1                             \t[default: 0]\n"
        "                  loadSize: 256                           \t[default: 299]\n"
        "          which_model_netD: resnet18_layer1\n"
        "----------------- End -------------------\n")
    opts = read_options(tmp_path / "x.pth")
    assert (opts.source, opts.fake_class_id, opts.load_size, opts.model_netd) == \
        ("opt.txt", 1, 256, "resnet18_layer1")
    (tmp_path / "opt.txt").write_text("fake_class_id: 2\n")
    with pytest.raises(ValueError, match="opt.txt: fake_class_id is 2"):
        read_options(tmp_path / "x.pth")


def test_export_uses_the_originals_class_order():
    model = build_model(ModelConfig("xception", "block1"), seed=0)
    exported = to_original(model)  # the original's default: row 0 is fake
    torch.testing.assert_close(exported["convout.bias"][0], model.head.bias[1])
    torch.testing.assert_close(exported["convout.weight"][1], model.head.weight[0])
    same = to_original(model, fake_class_id=1)
    torch.testing.assert_close(same["convout.bias"], model.head.bias)
    # and the fixture's own weights survive the way in and out unchanged
    raw = torch.load(CKPT, map_location="cpu", weights_only=True)["state_dict"]
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    back = build_model(ModelConfig("xception", "block2"))
    back.load_state_dict(to_ours(state, back.config, CKPT))
    out = to_original(back)
    for key, value in state.items():
        if key in out:
            torch.testing.assert_close(out[key], value, msg=key)


def test_the_api_reads_it_too(project_env, theirs, capsys):
    from PIL import Image

    from patchforensics import api

    det = api.load(CKPT)
    image = np.asarray(Image.open(FIXTURE / "images" / "real_003.png"))
    want = theirs.set_index("name").loc["real_003.png", "p_fake_after_softmax"]
    assert det.score(image) == pytest.approx(want, abs=1e-3)
    assert api.load(CKPT, fake_class_id=1).score(image) == pytest.approx(1 - want, abs=1e-3)
