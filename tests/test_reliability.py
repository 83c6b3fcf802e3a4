"""Reliability across the whole project: every command meets a generated corpus of bad inputs
(never a traceback, never a wrong number, sources untouched); `train`, `world` and `reproduce`
are SIGKILLed at random points and during a checkpoint write and a rerun finishes with the
result of an uninterrupted run; wrong parameters fail early and clearly."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from patchforensics import cli, paths
from patchforensics.images import KILL_IN_WRITE_ENV
from patchforensics.notebooks import run_notebook

from conftest import REFUSED, face_like, write_bad_corpus, write_planted

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
PY = sys.executable


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` (links not followed): to prove nothing changed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The bad-input corpus (in a folder with spaces and unicode, plus a symlink loop), an empty
    folder, a folder of mixed sizes, and a small good real/fake pair with a trained run."""
    base = tmp_path_factory.mktemp("reliability")
    corpus = base / "bad inputs ü"
    write_bad_corpus(corpus)
    (corpus / "loop").symlink_to(corpus, target_is_directory=True)
    empty = base / "empty"
    empty.mkdir()
    mixed = base / "mixed sizes"
    for split in ("train", "val"):
        (mixed / split).mkdir(parents=True)
        Image.fromarray(face_like(0, 32)).save(mixed / split / "a.png")
        Image.fromarray(face_like(1, 48)).save(mixed / split / "b.png")
    real = write_planted(base / "real", 0, 0, n_train=32, n_val=16, n_test=16)
    fake = write_planted(base / "fake", 50_000, 10, n_train=32, n_val=16, n_test=16)
    bad_fake = base / "fake with a bad file"
    shutil.copytree(fake, bad_fake)
    shutil.copy(corpus / "truncated_png.png", bad_fake / "train" / "zz.png")
    run = base / "run"
    # --load-size 0: whole 32 px images (train's default is notebook 02's 192 px upsampling)
    assert cli.main(["train", "--real", str(real), "--fake", str(fake), "--depth", "1",
                     "--load-size", "0",
                     "--epochs", "2", "--batch-size", "16", "--quiet", "--out", str(run)]) == 0
    return {"base": base, "corpus": corpus, "empty": empty, "mixed": mixed, "real": real,
            "fake": fake, "bad_fake": bad_fake, "run": run}


def one_line_error(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


# --- the bad-input corpus against every command -----------------------------------------------

def test_every_command_meets_the_corpus_and_leaves_sources_untouched(inputs, capsys, tmp_path):
    i = inputs
    before = {k: tree_digest(i[k]) for k in ("corpus", "real", "fake", "mixed")}
    # import: skip and report (documented); every refused file named with its problem.
    assert cli.main(["import", str(i["corpus"]), str(tmp_path / "imp"), "--size", "32",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert all(f"{k}" in out for k in REFUSED) and f"{len(REFUSED)} skipped" in out
    # import --on-error fail: stops at the first bad file, naming it.
    rc = cli.main(["import", str(i["corpus"]), str(tmp_path / "imp2"), "--size", "32",
                   "--on-error", "fail", "--quiet"])
    one_line_error(capsys, rc, "bad inputs ü")
    rc = cli.main(["import", str(i["empty"]), str(tmp_path / "imp3"), "--size", "32"])
    one_line_error(capsys, rc, "holds no image files")
    # audit: unreadable files are listed, the audit goes on; an empty side is an error.
    assert cli.main(["audit", str(i["corpus"]), str(i["real"] / "test")]) == 0
    out = capsys.readouterr().out
    assert out.count("unreadable:") >= len(REFUSED) - 1  # "tiny" reads fine as a container
    rc = cli.main(["audit", str(i["empty"]), str(i["real"] / "test")])
    one_line_error(capsys, rc, "holds no image files")
    # train: fails at the first bad file (documented), naming it; mixed sizes; empty; same.
    train = ["train", "--depth", "1", "--epochs", "1", "--load-size", "0", "--quiet"]
    rc = cli.main([*train, "--real", str(i["real"]), "--fake", str(i["bad_fake"]), "--out",
                   str(tmp_path / "t1")])
    one_line_error(capsys, rc, "zz.png", "truncated")
    rc = cli.main([*train, "--real", str(i["real"]), "--fake", str(i["mixed"]), "--out",
                   str(tmp_path / "t2")])
    one_line_error(capsys, rc, "mixed sizes")
    rc = cli.main([*train, "--real", str(i["empty"]), "--fake", str(i["fake"]), "--out",
                   str(tmp_path / "t3")])
    one_line_error(capsys, rc, "no such folder")
    rc = cli.main([*train, "--real", str(i["real"]), "--fake", str(i["real"]), "--out",
                   str(tmp_path / "t4")])
    one_line_error(capsys, rc, "same folder")
    assert not (tmp_path / "t4" / "best.pt").exists()
    # evaluate: a folder with bad or mixed files fails (a metric over a silently shrunk set
    # would be a wrong number), naming the file.
    rc = cli.main(["evaluate", str(i["run"]), "--real-images", str(i["real"] / "test"),
                   "--fake-images", f"c={i['corpus']}"])
    one_line_error(capsys, rc, "bad inputs ü")
    rc = cli.main(["evaluate", str(i["run"]), "--real-images", str(i["empty"]),
                   "--fake-images", f"f={i['fake'] / 'test'}"])
    one_line_error(capsys, rc, "no readable images")
    # score: skip and report (documented), a row per file; --strict fails on the first.
    assert cli.main(["score", str(i["run"]), str(i["corpus"]), "--quiet", "--out",
                     str(tmp_path / "s.csv")]) == 0
    assert capsys.readouterr().err.count("skipped ") == len(REFUSED)
    table = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert (table["error"] != "").sum() == len(REFUSED)
    rc = cli.main(["score", str(i["run"]), str(i["corpus"]), "--quiet", "--strict"])
    one_line_error(capsys, rc, "bad inputs ü")
    rc = cli.main(["score", str(i["run"]), str(i["empty"]), "--quiet"])
    one_line_error(capsys, rc, "no images found")
    # Nothing a command read was changed.
    assert {k: tree_digest(i[k]) for k in before} == before


def test_outputs_never_replace_another_runs_outputs(inputs, capsys, tmp_path):
    i = inputs
    out = tmp_path / "scores.csv"
    out.write_text("somebody else's table\n")
    rc = cli.main(["score", str(i["run"]), str(i["real"] / "test"), "--quiet", "--out",
                   str(out)])
    one_line_error(capsys, rc, "exists", "--force")
    assert out.read_text() == "somebody else's table\n"
    assert cli.main(["score", str(i["run"]), str(i["real"] / "test"), "--quiet", "--out",
                     str(out), "--force"]) == 0
    rc = cli.main(["evaluate", str(i["run"]), "--real-images", str(i["real"] / "test"),
                   "--fake-images", f"f={i['fake'] / 'test'}", "--out", str(out)])
    one_line_error(capsys, rc, "exists")
    # A run folder of another configuration is refused (train), an import folder too.
    rc = cli.main(["train", "--real", str(i["real"]), "--fake", str(i["fake"]), "--depth", "2",
                   "--epochs", "1", "--quiet", "--out", str(i["run"])])
    err = one_line_error(capsys, rc, "holds another run", "another --out", "--force")
    assert "force=True" not in err  # the command line's words, not the library's


# --- wrong parameters ---------------------------------------------------------------------------

def test_wrong_parameters_fail_early_and_clearly(inputs, capsys, tmp_path):
    i = inputs
    rc = cli.main(["train", "--real", str(i["real"]), "--fake", str(i["fake"]), "--depth", "9"])
    one_line_error(capsys, rc, "depth of xception must be one of")
    rc = cli.main(["train", "--real", str(i["real"]), "--fake", str(i["fake"]), "--arch",
                   "resnet18", "--depth", "5"])
    one_line_error(capsys, rc, "depth of resnet18")
    rc = cli.main(["evaluate", str(tmp_path / "nothing"), "--real-images", str(i["real"] / "test"),
                   "--fake-images", f"f={i['fake'] / 'test'}"])
    one_line_error(capsys, rc, "no such checkpoint")
    # Real and fake swapped: the classifier knows which folders it was trained on.
    rc = cli.main(["evaluate", str(i["run"]), "--real-images", str(i["fake"] / "test"),
                   "--fake-images", f"r={i['real'] / 'test'}"])
    one_line_error(capsys, rc, "swapped")
    rc = cli.main(["evaluate", str(i["run"]), "--real-images", str(i["real"] / "test"),
                   "--fake-images", f"r={i['real'] / 'test'}"])
    one_line_error(capsys, rc, "is the real folder")
    # A resolution the model cannot take, and images of another size than it was trained on.
    tiny = tmp_path / "tiny"
    for kind, seed in (("real", 0), ("fake", 9)):
        write_planted(tiny / kind, seed, 0, n_train=4, n_val=2, size=16)
    rc = cli.main(["train", "--real", str(tiny / "real"), "--fake", str(tiny / "fake"),
                   "--arch", "xception", "--depth", "full", "--load-size", "2", "--epochs", "1",
                   "--quiet", "--out", str(tmp_path / "tiny_run")])
    one_line_error(capsys, rc, "cannot take")
    rc = cli.main(["evaluate", str(i["run"]), "--real-images", str(tiny / "real" / "train"),
                   "--fake-images", f"f={tiny / 'fake' / 'train'}"])
    one_line_error(capsys, rc, "trained on 32x32")
    # A corrupt checkpoint is named, not unpickled.
    bad = tmp_path / "bad_run"
    bad.mkdir()
    (bad / "best.pt").write_bytes(b"not a checkpoint")
    rc = cli.main(["score", str(bad), str(i["real"] / "test"), "--quiet"])
    one_line_error(capsys, rc, "best.pt: not a checkpoint")


def test_notebooks_name_wrong_parameters_in_their_first_cells(project_env, tmp_path):
    # (cell 2 is the parameters papermill injects; 03's cell 3 its smoke settings)
    with pytest.raises(RuntimeError, match=r"notebook 02_train_classifiers failed in cell 3: "
                                           r"ValueError: unknown generator 'nope'"):
        run_notebook("02_train_classifiers", tmp_path,
                     {"smoke": True, "interactive": False, "generator": "nope"})
    run_notebook("02_train_classifiers", tmp_path, {"smoke": True, "interactive": False})
    with pytest.raises(RuntimeError, match=r"failed in cell 4: ValueError: notebook 02 trained "
                                           r"no \['xception_block9'\]"):
        run_notebook("03_evaluate_generalization", tmp_path,
                     {"smoke": True, "interactive": False, "heatmap_model": "xception_block9"})


# --- SIGKILL at random points and during a checkpoint write ---------------------------------

def cli_cmd(*args: str) -> list[str]:
    return [PY, "-m", "patchforensics.cli", *args]


def kill_after(cmd: list[str], delay: float, env: dict[str, str]) -> int:
    """Start ``cmd``, SIGKILL it (and its children) after ``delay`` s unless it ended."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def test_train_killed_at_random_points_and_mid_write_resumes_to_the_same_result(inputs,
                                                                                tmp_path):
    i = inputs
    args = ["train", "--real", str(i["real"]), "--fake", str(i["fake"]), "--depth", "1",
            "--load-size", "0",
            "--epochs", "3", "--patience", "3", "--batch-size", "16", "--checkpoint-every", "1",
            "--threads", "1", "--quiet"]
    env = {**os.environ}
    t0 = time.monotonic()
    subprocess.run(cli_cmd(*args, "--out", str(tmp_path / "whole")), env=env, check=True,
                   capture_output=True)
    whole_s = time.monotonic() - t0  # not a speed check: it places the kills inside the run
    ref = json.loads((tmp_path / "whole" / "done.json").read_text())
    rng = random.Random(0)
    kills = 0
    for trial in range(3):  # random points between 40 % and 90 % of an uninterrupted run
        out = tmp_path / f"killed{trial}"
        rc = kill_after(cli_cmd(*args, "--out", str(out)), rng.uniform(0.4, 0.9) * whole_s,
                        env)
        kills += rc == -signal.SIGKILL
        subprocess.run(cli_cmd(*args, "--out", str(out)), env=env, check=True,
                       capture_output=True)
        done = json.loads((out / "done.json").read_text())
        assert done["params_checksum"] == ref["params_checksum"] and done["best"] == ref["best"]
    # During a write: the 6th atomic write (a latest.pt) dies after its data hit the disk and
    # before the rename; the hidden temporary file is left and never read.
    out = tmp_path / "mid_write"
    rc = subprocess.run(cli_cmd(*args, "--out", str(out)), env={**env, KILL_IN_WRITE_ENV: "6"},
                        capture_output=True).returncode
    assert rc == -signal.SIGKILL
    assert list(out.glob(".*.tmp-*"))  # the interrupted write's leftover
    subprocess.run(cli_cmd(*args, "--out", str(out)), env=env, check=True, capture_output=True)
    done = json.loads((out / "done.json").read_text())
    assert done["params_checksum"] == ref["params_checksum"] and done["best"] == ref["best"]
    assert kills >= 1  # at least one random kill landed mid-run


def project_subenv(root: Path) -> dict[str, str]:
    """Environment of a subprocess working in its own relocated project (wheels linked in)."""
    (root / "data" / "packages").mkdir(parents=True, exist_ok=True)
    for wheel in paths.packages_dir().glob("*.whl"):
        link = root / "data" / "packages" / wheel.name
        if not link.exists():
            link.symlink_to(wheel.resolve())
    return {**os.environ, "PATCHFORENSICS_DATA": str(root / "data"),
            "PATCHFORENSICS_RESULTS": str(root / "results"),
            "PATCHFORENSICS_CHECKPOINTS": str(root / "checkpoints")}


def test_world_killed_at_random_points_and_mid_write_rebuilds_the_same_world(project_env,
                                                                              tmp_path):
    # The manipulated-face sets go through the same atomic write_set; left out to save time.
    args = ["world", "--smoke", "--quiet", "--no-manipulations"]
    whole = project_subenv(tmp_path / "whole")
    subprocess.run(cli_cmd(*args), env=whole, check=True, capture_output=True)
    ref = tree_digest(tmp_path / "whole" / "data" / "smoke32")
    for n, (delay, in_write) in enumerate(((5.0, None), (None, "40"))):
        env = project_subenv(tmp_path / f"killed{n}")
        if in_write:
            rc = subprocess.run(cli_cmd(*args), env={**env, KILL_IN_WRITE_ENV: in_write},
                                capture_output=True).returncode
        else:
            rc = kill_after(cli_cmd(*args), delay, env)
        assert rc == -signal.SIGKILL, rc
        subprocess.run(cli_cmd(*args), env=env, check=True, capture_output=True)
        got = tree_digest(tmp_path / f"killed{n}" / "data" / "smoke32")
        same = {k: v for k, v in got.items() if k != "manifest.json" and "/." not in k}
        want = {k: v for k, v in ref.items() if k != "manifest.json"}
        assert same == want  # every image identical to the uninterrupted build
        manifest = json.loads((tmp_path / f"killed{n}" / "data" / "smoke32" /
                               "manifest.json").read_text())
        assert len(manifest["sets"]) == 14  # 2 real, 8 generated, 4 inverted sets


def test_reproduce_killed_mid_series_resumes_and_skips_what_finished(project_env, tmp_path):
    env = project_subenv(tmp_path / "proj")
    cmd = cli_cmd("reproduce", "--smoke", "--only", "01", "02")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    done01 = tmp_path / "proj" / "results" / "notebooks" / "01_preprocessing.done.json"
    for line in proc.stdout:  # kill as soon as notebook 02 starts
        if "02_train_classifiers] running" in line:
            break
    assert done01.exists()
    time.sleep(2)  # let notebook 02 get going: the kill lands inside it
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "proj" / "results" / "notebooks" /
                "02_train_classifiers.done.json").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert "01_preprocessing] finished earlier" in rerun.stdout
    assert "02_train_classifiers] done in" in rerun.stdout
    assert (tmp_path / "proj" / "results" / "REPORT.md").exists()
