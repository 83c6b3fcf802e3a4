"""The headless series: live progress on the terminal and kernel noise in the log; a cell that
keeps making progress runs on while a silent one is stopped with one line; SIGINT/SIGTERM stop
the kernel; a failing cell is named; finished notebooks are skipped on rerun; every notebook
parameter is documented for ``papermill --help-notebook``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from patchforensics import notebooks, paths
from patchforensics.notebooks import (
    NotebookError,
    NotebookTimeout,
    run_notebook,
    run_series,
)

pytestmark = pytest.mark.slow
TCP_WARNING = "without encryption"


def write_notebook(path, *sources: str) -> str:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": notebooks.KERNEL, "display_name": "patchforensics",
                                 "language": "python"}
    params = new_code_cell("x: int = 0  # a parameter")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return str(path)


def project(root: Path, *sources: str) -> dict[str, str]:
    """A relocated project (the repository's notebooks, or with ``sources`` a root whose
    notebook 01 is a tiny test notebook of these cells); returns its environment."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    if sources:
        write_notebook(root / "notebooks" / "01_preprocessing.ipynb", *sources)
    (root / "data" / "packages").mkdir(parents=True, exist_ok=True)
    for wheel in paths.packages_dir().glob("*.whl"):
        link = root / "data" / "packages" / wheel.name
        if not link.exists():
            link.symlink_to(wheel.resolve())
    env = {**os.environ, "PATCHFORENSICS_DATA": str(root / "data"),
           "PATCHFORENSICS_RESULTS": str(root / "results"),
           "PATCHFORENSICS_CHECKPOINTS": str(root / "checkpoints")}
    if sources:
        env["PATCHFORENSICS_ROOT"] = str(root)
    return env


def reproduce(*args: str) -> list[str]:
    return [sys.executable, "-m", "patchforensics.cli", "reproduce", *args]


def test_reproduce_smoke_shows_progress_and_keeps_kernel_noise_in_the_log(project_env,
                                                                           tmp_path):
    env = project(tmp_path / "proj")
    run = subprocess.run(reproduce("--smoke", "--only", "01"), env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("estimate: about ")
    cells = [m for line in lines if (m := re.match(
        r"\[1/1 01_preprocessing\] cell (\d+)/(\d+) \(.+\) (\d+):(\d\d) elapsed", line))]
    assert len(cells) >= 2  # the first cell, then at least one later event
    assert int(cells[-1][1]) > 1 and int(cells[-1][2]) >= int(cells[-1][1])
    assert "[1/1 01_preprocessing] done in" in run.stdout
    # The kernel's warning, papermill's logging and the cells' output are in the log only.
    terminal = run.stdout + run.stderr
    assert TCP_WARNING not in terminal and "Traceback" not in terminal
    assert "papermill" not in terminal.lower() and "@@progress" not in terminal
    log = (tmp_path / "proj" / "results" / "logs" / "01_preprocessing.log").read_text()
    assert TCP_WARNING in log and "[papermill INFO]" in log
    done = json.loads((tmp_path / "proj" / "results" / "notebooks" /
                       "01_preprocessing.done.json").read_text())
    assert done["parameters"] == {"smoke": True, "interactive": False}
    # The run's site opens from the file system: every page and image it links is there, and
    # nothing is fetched from a network (issue 27); MediaPipe's log lines stayed out of the cells.
    site = tmp_path / "proj" / "results" / "site"
    assert (site / "notebooks" / "01_preprocessing.html").exists()
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', text), page
        for target in re.findall(r'(?:src|href)="([^"#:]+)"', text):
            assert (page.parent / target).exists(), (page, target)
    assert "XNNPACK" not in (tmp_path / "proj" / "results" / "notebooks" /
                             "01_preprocessing.ipynb").read_text()
    rerun = subprocess.run(reproduce("--smoke", "--only", "01"), env=env, capture_output=True,
                           text=True, timeout=300)
    assert "[1/1 01_preprocessing] finished earlier" in rerun.stdout
    assert "estimate" not in rerun.stdout  # nothing left to run, nothing to estimate


def test_a_cell_that_keeps_making_progress_outlives_the_stall_limit(project_env, tmp_path):
    src = write_notebook(
        tmp_path / "chatty.ipynb",
        "import time\nfor i in range(16):\n    print('step', i, flush=True)\n    time.sleep(0.5)",
        # silent but for the heartbeat of a library progress bar
        "from patchforensics import progress\nfor i in progress.bar(range(16), desc='loop'):\n"
        "    time.sleep(0.5)")
    lines: list[str] = []
    live = notebooks.LiveProgress("[chatty]", lines.append, min_gap=1.0)
    t0 = time.monotonic()
    out = run_notebook("chatty", tmp_path / "out", {}, source=src, stall_timeout=3, live=live)
    assert time.monotonic() - t0 > 16  # both cells ran to the end, far past the 3 s limit
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    printed = "".join("".join(o.get("text", "")) for o in cells[1]["outputs"])
    assert printed.count("step") == 16
    assert not any(o.get("text") for o in cells[2]["outputs"])  # heartbeats are not kept
    beats = [line for line in lines if line.startswith("[chatty] cell 3/3") and "| loop " in line]
    assert beats and re.search(r"\| loop \d+/16, about \d+:\d\d left$", beats[-1])


def test_a_silent_cell_is_stopped_with_one_line(project_env, tmp_path):
    src = write_notebook(tmp_path / "stuck.ipynb", "y = 1", "import time\ntime.sleep(600)")
    t0 = time.monotonic()
    with pytest.raises(NotebookTimeout) as info:
        run_notebook("stuck", tmp_path / "out", {}, source=src, stall_timeout=3)
    assert time.monotonic() - t0 < 60
    message = str(info.value)
    assert re.fullmatch(r"notebook stuck stopped in cell 3 of 3 \(import time\): no output and "
                        r"no heartbeat for 3 s \(executed copy: .*stuck\.ipynb; log: "
                        r".*stuck\.log\)", message)
    assert "\n" not in message and info.value.__cause__ is None
    assert (tmp_path / "out" / "stuck.ipynb").exists()  # the executed copy is kept
    log = (paths.results_dir() / "logs" / "stuck.log").read_text()
    assert TCP_WARNING in log and message in log


def test_hard_caps_still_stop_a_cell_and_a_notebook(project_env, tmp_path):
    src = write_notebook(tmp_path / "busy.ipynb",
                         "import time\nwhile True:\n    print('.', flush=True)\n"
                         "    time.sleep(0.2)")
    with pytest.raises(NotebookTimeout, match=r"cell 2 of 2 \(import time\): the cell ran past "
                                              r"its limit of 3 s"):
        run_notebook("busy", tmp_path / "out", {}, source=src, cell_timeout=3)
    src = write_notebook(tmp_path / "slow.ipynb", *["import time\ntime.sleep(1.5)"] * 6)
    with pytest.raises(NotebookTimeout, match=r"notebook slow stopped in cell \d of 7 .*: the "
                                              r"notebook ran past its limit of 4 s"):
        run_notebook("slow", tmp_path / "out", {}, notebook_timeout=4, source=src)


def test_a_failing_cell_is_named_and_widgets_outputs_do_not_hang(project_env, tmp_path):
    src = write_notebook(tmp_path / "bad.ipynb", "assert x == 0",
                         "raise ValueError('boom\\nsecond line')")
    with pytest.raises(NotebookError, match=r"notebook bad failed in cell 3: ValueError: boom "
                                            r"\(cell 3 of 3: raise ValueError"):
        run_notebook("bad", tmp_path / "out", {}, source=src)
    # Output widgets written with append_display_data, as the notebooks' explorers do.
    src = write_notebook(
        tmp_path / "widgets.ipynb",
        "import ipywidgets as w\nfrom IPython.display import display",
        *["out = w.Output()\nout.append_display_data({'text/plain': 'hi'})\ndisplay(out)"] * 10)
    out = run_notebook("widgets", tmp_path / "out", {"x": 1}, source=src)
    nb = json.loads(out.read_text())
    assert sum(bool(c.get("outputs")) for c in nb["cells"] if c["cell_type"] == "code") >= 10


def test_finished_notebooks_are_skipped_unless_forced(project_env, tmp_path, monkeypatch, capsys):
    project(tmp_path / "proj", "print('hello')")
    monkeypatch.setenv("PATCHFORENSICS_ROOT", str(tmp_path / "proj"))
    out = tmp_path / "series"
    run_series(smoke=True, only=["01"], out_dir=out, report=False, estimate=False)
    done = json.loads((out / "01_preprocessing.done.json").read_text())
    assert done["parameters"] == {"smoke": True, "interactive": False}
    assert len(done["source_sha256"]) == 64 and done["provenance"]["packages"]["torch"]
    capsys.readouterr()
    run_series(smoke=True, only=["01"], out_dir=out, report=False, estimate=False)
    assert "skipped" in capsys.readouterr().out
    run_series(smoke=True, only=["01"], out_dir=out, report=False, estimate=False, force=True)
    assert "done in" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no notebook matches"):
        run_series(only=["99"], out_dir=out)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()  # a zombie: not running


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_runner_stops_the_kernel_with_one_line(project_env, tmp_path, sig,
                                                               code):
    pid_file = tmp_path / "kernel.pid"
    env = project(tmp_path / "proj",
                  f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                  "while True:\n    print('working', flush=True)\n    time.sleep(0.5)")
    proc = subprocess.Popen(reproduce("--only", "01"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "the cell never started"
            time.sleep(0.2)
        kernel = int(pid_file.read_text())
        time.sleep(1)
        t0 = time.monotonic()
        proc.send_signal(sig)  # to the runner alone, as a job system sends it
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 15  # "promptly": a few seconds, generous for a busy machine
    assert proc.returncode == code
    assert err.count("\n") == 1 and "Traceback" not in err + out, err
    # (cell 2 holds the parameters papermill injects)
    assert re.match(rf"patchforensics reproduce: notebook 01_preprocessing stopped in cell 3 of "
                    rf"3 \(import os, time\): stopped by {sig.name} \(executed copy: ", err)
    for _ in range(50):
        if _gone(kernel):
            break
        time.sleep(0.1)
    assert _gone(kernel), "the kernel outlived the runner"
    assert TCP_WARNING not in out + err


def test_every_parameter_is_documented_for_help_notebook():
    """``papermill --help-notebook`` lists every parameter of the tagged cell with its help
    (its parser skips a line with a second "=", as a help comment "" = ... once had)."""
    import ast
    import json

    import papermill as pm

    for name in notebooks.series():
        path = paths.notebooks_src_dir() / f"{name}.ipynb"
        params = pm.inspect_notebook(str(path))
        cell = next(c for c in json.loads(path.read_text())["cells"]
                    if "parameters" in c["metadata"].get("tags", []))
        assigned = {n.target.id for n in ast.parse("".join(cell["source"])).body
                    if isinstance(n, ast.AnnAssign)}
        assert assigned and assigned == set(params), (name, assigned ^ set(params))
        assert {"seed", "smoke", "interactive", "device"} <= set(params), name
        for key, p in params.items():
            assert p["help"] and p["inferred_type_name"] != "None", (name, key)
