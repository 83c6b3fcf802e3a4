"""The run-folder owner: names, layout, resolve, skip/resume/continue, guards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from patchforensics import paths, protocol, runs
from patchforensics.train import train
from patchforensics.train_config import TrainConfig

from conftest import write_planted


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A data root in the import layout: ``root/real/faces``, ``root/fake/faces/gan9``."""
    root = tmp_path_factory.mktemp("own") / "mydata"
    return (write_planted(root / "real" / "faces", 0, 0, n_train=32, n_val=16),
            write_planted(root / "fake" / "faces" / "gan9", 50_000, 10, n_train=32, n_val=16))


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"arch": "resnet18", "depth": "layer1", "epochs": 1, "batch_size": 16,
                          "setting": "samples", "stop_at_perfect": False, "patience": 5, **kw})


def test_names_say_data_setting_model_size_and_seed(pair, project_env):
    real, fake = pair
    assert runs.pair_names(real, fake) == ("mydata", "faces", "gan9")
    assert runs.pair_names(real, real.parent) == ("custom", "faces", "real")
    folder = runs.default_run_dir(_cfg(load_size=64, seed=3), real, fake)
    assert folder == (paths.checkpoints_dir() / "classifiers" / "mydata" / "faces_gan9"
                      / "samples" / "resnet18_layer1_in64_seed3")
    assert runs.leaf_name("xception", "block2", 0, 0) == "xception_block2_seed0"
    # The profile's folders are the ones train_grid writes (the name includes the load size).
    p = protocol.profile("default")
    folders = protocol.run_folders(p, "w", "celeba", "dcgan")
    assert folders[("xception_block1", 0)].name == "xception_block1_in192_seed0"
    assert folders[("xception_full", 0)].name == "xception_full_in192_seed0"  # like for like
    quick = protocol.run_folders(protocol.profile("quick"), "w", "celeba", "dcgan")
    assert quick[("xception_full", 0)].name == "xception_full_seed0"  # the faces' own size
    assert quick[("xception_block1", 0)] == folders[("xception_block1", 0)]  # continued by it


def test_cli_runs_are_where_notebooks_look(pair, project_env):
    """`train` without a folder writes below the pair's run root; find_runs finds it there."""
    real, fake = pair
    res = train(_cfg(), real, fake, device="cpu", progress=False)
    assert res.out_dir == runs.run_root("mydata", "faces", "gan9", "samples") / \
        "resnet18_layer1_seed0"
    found = runs.find_runs(runs.run_root("mydata", "faces", "gan9", "samples"))
    assert found == {"resnet18_layer1": runs.relative_name(res.out_dir)}
    assert runs.resolve(found["resnet18_layer1"]) == res.out_dir  # relative to checkpoints
    # A run folder of an older version (named without the load size) beside it: the one named as
    # runs names it now is found; two of the same name would be refused, naming both.
    old = res.out_dir.parent / "resnet18_layer1_old_seed0"
    shutil.copytree(res.out_dir, old)
    assert runs.find_runs(res.out_dir.parent)["resnet18_layer1"] == found["resnet18_layer1"]
    config = json.loads((old / "config.json").read_text())
    config["config"]["load_size"] = 7  # now neither folder is named as its config says
    (res.out_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="2 finished runs of resnet18_layer1 seed 0"):
        runs.find_runs(res.out_dir.parent)
    # ... unless a profile's load sizes tell them apart (quick's full model vs. default's)
    assert runs.find_runs(res.out_dir.parent, load_sizes={"resnet18_layer1": 7}) == found
    assert runs.checkpoint_file(found["resnet18_layer1"]).name == "best.pt"


def test_missing_run_is_named_once(tmp_path, project_env):
    with pytest.raises(FileNotFoundError) as err:
        runs.resolve("classifiers/nope/run")
    msg = str(err.value)
    assert msg.startswith("classifiers/nope/run: no such checkpoint or run folder")
    assert "checkpoints/classifiers/nope" not in msg.split(":")[0]  # not a doubled path


def test_raising_the_epoch_cap_continues_and_a_resume_says_so(pair, tmp_path, capsys):
    real, fake = pair
    one = train(_cfg(epochs=1), real, fake, tmp_path / "run", device="cpu", progress=False)
    assert one.stopped == "epochs" and len(one.history) == 1
    capsys.readouterr()
    two = train(_cfg(epochs=2), real, fake, tmp_path / "run", device="cpu", progress=False)
    assert "continuing the finished run from epoch 1 to the new cap of 2" in \
        capsys.readouterr().out
    assert not two.skipped and len(two.history) == 2
    # ... and equals a fresh two-epoch run (same seed, same order, same steps).
    fresh = train(_cfg(epochs=2), real, fake, tmp_path / "fresh", device="cpu", progress=False)
    cols = ["epoch", "steps", "train_loss", "val_loss", "val_patch_acc"]
    pd.testing.assert_frame_equal(two.history[cols], fresh.history[cols])
    assert runs.finished(tmp_path / "run")["params_checksum"] == \
        runs.finished(tmp_path / "fresh")["params_checksum"]
    # A lower cap than what ran is another run: refused, saying so.
    with pytest.raises(ValueError, match=r"epochs 2 -> 1"):
        train(_cfg(epochs=1), real, fake, tmp_path / "run", device="cpu", progress=False)
    # An interrupted run resumes and says where.
    (tmp_path / "run" / runs.DONE).unlink()
    hist = pd.read_csv(tmp_path / "run" / runs.HISTORY)
    capsys.readouterr()
    # make latest.pt an interrupted state: it is the end of epoch 2 with stopped cleared
    again = train(_cfg(epochs=3), real, fake, tmp_path / "run", device="cpu", progress=False)
    assert "resuming at epoch 3" in capsys.readouterr().out
    assert len(again.history) == len(hist) + 1


def test_another_run_in_the_folder_says_what_differs(pair, tmp_path):
    real, fake = pair
    train(_cfg(), real, fake, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"holds another run \(batch_size 16 -> 8\)"):
        train(_cfg(batch_size=8), real, fake, tmp_path / "run", device="cpu", progress=False)
    other = write_planted(tmp_path / "real2", 7, 0, n_train=32, n_val=16)
    with pytest.raises(ValueError, match=r"real folder .* -> .*real2"):
        train(_cfg(), other, fake, tmp_path / "run", device="cpu", progress=False)


def test_guards_swapped_folders_and_strangers_in_out(pair, tmp_path):
    real, fake = pair
    with pytest.raises(ValueError, match="swapped"):
        train(_cfg(), fake, real, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ValueError, match="same folder"):
        train(_cfg(), real, real, tmp_path / "run", device="cpu", progress=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"photos: holds files that are not a run's "
                                         r"\(holiday.jpg\)"):
        train(_cfg(), real, fake, photos, device="cpu", progress=False)
    assert sorted(p.name for p in photos.iterdir()) == ["holiday.jpg"]  # nothing written


def test_a_world_manifest_says_which_folder_is_real(tmp_path):
    root = tmp_path / "w"
    a, b = root / "sets" / "a", root / "sets" / "b"
    a.mkdir(parents=True), b.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"sets": {"sets/a": {}, "sets/b": {}}}))
    runs.check_roles(a, b)  # the manifest does not say: nothing to refuse
    (root / "manifest.json").write_text(json.dumps({"sets": {}}))
    real_set, fake_set = root / "real" / "x", root / "fake" / "x" / "g"
    real_set.mkdir(parents=True), fake_set.mkdir(parents=True)
    runs.check_roles(real_set, fake_set)
    with pytest.raises(ValueError, match="swapped"):
        runs.check_roles(fake_set, real_set)
