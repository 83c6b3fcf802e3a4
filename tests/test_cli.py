"""The command line: user mistakes give one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from patchforensics import cli
from patchforensics.cli import main

from conftest import face_like, write_bad_corpus


def test_world_smoke_into_a_root(project_env, tmp_path, capsys):
    assert main(["world", "--smoke", "--root", str(tmp_path / "w"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "real/celeba: train 160, val 20, test 20" in out
    assert (tmp_path / "w" / "manifest.json").exists()
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    for method in ("faceswap", "deepfake", "reenact", "neuraltex"):  # notebook 07's sets
        entry = manifest["sets"][f"fake/celeba/{method}"]
        assert entry["manipulation"] == method and set(entry["skipped"]) == {"train", "val", "test"}
        assert (tmp_path / "w" / "fake" / "celeba" / method / entry["masks"]["file"]).exists()


def test_import_skip_and_fail_modes(tmp_path, capsys):
    src = tmp_path / "src"
    write_bad_corpus(src)
    Image.fromarray(face_like(1)).save(src / "good.png")
    assert main(["import", str(src), str(tmp_path / "a"), "--size", "32", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "7 skipped" in out and "empty.png: is empty" in out
    code = main(["import", str(src), str(tmp_path / "b"), "--size", "32", "--on-error", "fail",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(src) in err and "error:" in err


def test_console_script_reports_errors_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "patchforensics.cli", "audit",
                           str(tmp_path / "no"), str(tmp_path / "pe")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "no such folder" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_while_the_parser_loads_is_one_line_and_130(monkeypatch, capsys):
    """A SIGINT in the first seconds (the parser imports torch) ends like one later: status
    130 and one line, no traceback."""
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["reproduce", "--smoke"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "Traceback" not in err
