"""The Python API (``patchforensics.load``) and ``python -m patchforensics``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import patchforensics
from patchforensics import cli
from patchforensics.receptive_field import receptive_field
from patchforensics.scoring import score_files

from conftest import face_like, train_tiny, write_bad_corpus

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("error::UserWarning")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("api"), n_train=64, epochs=3)


def test_load_scores_paths_pil_images_and_arrays_alike(run, tmp_path):
    det = patchforensics.load(run)
    assert patchforensics.load(run / "best.pt").score is not None  # a checkpoint file too
    face = face_like(3, 80)[:, :60]  # any size: centre square, LANCZOS to 32 px
    path = tmp_path / "face.png"
    Image.fromarray(face).save(path)
    from_path, from_pil = det.score(path), det.score(Image.open(path))
    from_array = det.score(face)
    assert 0.0 <= from_path <= 1.0
    assert from_path == pytest.approx(from_pil) == pytest.approx(from_array)
    # The same number `patchforensics score` prints for the file.
    row = score_files(run, [path], progress=False).iloc[0]
    assert from_path == pytest.approx(row["prob_fake"], abs=1e-6)
    with pytest.raises(ValueError, match=r"ImageFile: score_files takes files and folders; .*load"):
        score_files(run, [Image.open(path)], progress=False)
    pm = det.patch_map(str(path))
    assert pm.shape == receptive_field(det.checkpoint.model.config, 32).output_size
    gray = det.score(face[..., 0])  # H x W gray arrays are repeated to RGB
    assert 0.0 <= gray <= 1.0
    read_only = face.copy()
    read_only.setflags(write=False)
    assert det.score(read_only) == pytest.approx(from_array)


def test_heatmap_is_a_labelled_figure(run):
    det = patchforensics.load(run)
    fig = det.heatmap(face_like(4, 64))
    title = fig._suptitle.get_text()
    assert det.name in title and "P(fake) =" in title
    assert len(fig.axes) == 3  # image, overlay, colour bar


def test_bad_inputs_say_what_is_wrong(run, tmp_path):
    det = patchforensics.load(run)
    with pytest.raises(ValueError, match="uint8"):
        det.score(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(TypeError, match="PIL image"):
        det.score([1, 2, 3])
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        patchforensics.load(tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="mode"):
        patchforensics.load(run, mode="median")


def test_module_entry_point_and_version():
    out = subprocess.run([sys.executable, "-m", "patchforensics", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"patchforensics {patchforensics.__version__}"


def test_score_with_nothing_scorable_exits_2_with_one_line(run, tmp_path, capsys):
    bad = write_bad_corpus(tmp_path / "bad")
    rc = cli.main(["score", str(run), str(bad["text"]), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("patchforensics score: error: none of")
