"""Where things go: the project root follows the working directory, a world built elsewhere
keeps its own caches, a moved data dir finds the verified wheels instead of downloading."""

from __future__ import annotations

from pathlib import Path

from patchforensics import embedded, paths
from patchforensics.generators.training import run_dir

REPO = Path(__file__).resolve().parents[1]


def test_root_is_the_repository_only_from_inside_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PATCHFORENSICS_ROOT", raising=False)
    monkeypatch.chdir(REPO / "lib")
    assert paths.root() == REPO
    monkeypatch.chdir(tmp_path)  # a study elsewhere writes there, never into the repository
    assert paths.root() == tmp_path.resolve()
    assert paths.reference_dir() == REPO / "results" / "reference"  # code assets stay put
    assert paths.notebooks_src_dir() == REPO / "notebooks"
    monkeypatch.setenv("PATCHFORENSICS_ROOT", str(tmp_path / "elsewhere"))
    assert paths.root() == (tmp_path / "elsewhere").resolve()


def test_a_world_built_outside_the_data_dir_keeps_its_generators(tmp_path, project_env):
    inside = run_dir(paths.world_dir("smoke32"), "celeba", "dcgan")
    assert inside == paths.checkpoints_dir() / "generators" / "smoke32" / "celeba" / "dcgan"
    outside = run_dir(tmp_path / "myworld", "celeba", "dcgan")
    assert outside == tmp_path / "myworld" / "checkpoints" / "generators" / "myworld" / \
        "celeba" / "dcgan"


def test_a_moved_data_dir_copies_the_verified_wheel_and_says_so(tmp_path, monkeypatch, capsys,
                                                                project_env):
    monkeypatch.setenv("PATCHFORENSICS_DATA", str(tmp_path / "moved"))
    usual = (paths.repo() or paths.root()) / "data" / "packages"
    spec = embedded.PACKAGES["gan-face-generate"]
    assert (usual / spec.wheel).exists()  # project_env fetched it there
    got = embedded.fetch_wheel("gan-face-generate")
    assert got == tmp_path / "moved" / "packages" / spec.wheel
    assert "copying the verified one" in capsys.readouterr().err
