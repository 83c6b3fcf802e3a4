"""The headless series: a stuck cell or an overlong notebook fails with a clear message instead
of hanging CI, a failing cell is named, finished notebooks are skipped on rerun, and every
notebook parameter is documented for ``papermill --help-notebook``."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from patchforensics import notebooks, paths
from patchforensics.notebooks import NotebookTimeout, run_notebook, run_series

pytestmark = pytest.mark.slow


def write_notebook(path, *sources: str) -> str:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": notebooks.KERNEL, "display_name": "patchforensics",
                                 "language": "python"}
    params = new_code_cell("x: int = 0  # a parameter")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return str(path)


def test_a_stuck_cell_fails_with_a_clear_message(project_env, tmp_path):
    src = write_notebook(tmp_path / "stuck.ipynb", "y = 1", "import time\ntime.sleep(600)")
    with pytest.raises(NotebookTimeout, match=r"notebook stuck: cell 3 ran past its limit of 3 s"):
        run_notebook("stuck", tmp_path / "out", {}, source=src, cell_timeout=3)
    assert (tmp_path / "out" / "stuck.ipynb").exists()  # the executed copy is kept


def test_a_notebook_past_its_limit_fails_and_names_the_cell(project_env, tmp_path):
    src = write_notebook(tmp_path / "slow.ipynb",
                         *["import time\ntime.sleep(1.5)"] * 6)
    with pytest.raises(NotebookTimeout, match=r"notebook slow: stopped in cell \d: the notebook "
                                              r"ran past its limit of 4 s"):
        run_notebook("slow", tmp_path / "out", {}, source=src, cell_timeout=60,
                     notebook_timeout=4)


def test_a_failing_cell_is_named_and_widgets_outputs_do_not_hang(project_env, tmp_path):
    src = write_notebook(tmp_path / "bad.ipynb", "assert x == 0",
                         "raise ValueError('boom')")
    with pytest.raises(RuntimeError, match=r"notebook bad failed in cell 3: ValueError: boom"):
        run_notebook("bad", tmp_path / "out", {}, source=src, cell_timeout=60)
    # Output widgets written with append_display_data, as the notebooks' explorers do.
    src = write_notebook(
        tmp_path / "widgets.ipynb",
        "import ipywidgets as w\nfrom IPython.display import display",
        *["out = w.Output()\nout.append_display_data({'text/plain': 'hi'})\ndisplay(out)"] * 10)
    out = run_notebook("widgets", tmp_path / "out", {"x": 1}, source=src, cell_timeout=60)
    nb = json.loads(out.read_text())
    assert sum(bool(c.get("outputs")) for c in nb["cells"] if c["cell_type"] == "code") >= 10


def test_finished_notebooks_are_skipped_unless_forced(project_env, tmp_path, capsys):
    out = tmp_path / "series"
    run_series(smoke=True, only=["01"], out_dir=out, report=False)
    done = json.loads((out / "01_preprocessing.done.json").read_text())
    assert done["parameters"] == {"smoke": True, "interactive": False}
    assert len(done["source_sha256"]) == 64 and done["provenance"]["packages"]["torch"]
    capsys.readouterr()
    run_series(smoke=True, only=["01"], out_dir=out, report=False)
    assert "skipped" in capsys.readouterr().out
    run_series(smoke=True, only=["01"], out_dir=out, report=False, force=True)
    assert "done in" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no notebook matches"):
        run_series(only=["99"], out_dir=out)


def test_every_parameter_is_documented_for_help_notebook():
    import papermill as pm

    for name in notebooks.SERIES:
        params = pm.inspect_notebook(str(paths.notebooks_src_dir() / f"{name}.ipynb"))
        assert {"seed", "smoke", "interactive", "device"} <= set(params), name
        for key, p in params.items():
            assert p["help"] and p["inferred_type_name"] != "None", (name, key)
