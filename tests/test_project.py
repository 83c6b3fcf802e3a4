"""Project hygiene: one dependency list, output-free notebooks with documented parameters."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    text = (REPO / "environment.yml").read_text()
    pip_section = text[text.index("- pip:"):]
    listed = {line.strip()[2:] for line in pip_section.splitlines()[1:]
              if line.strip().startswith("- ")} - {"-e ."}
    assert listed == declared
    assert "python=3.11" in text


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / "README.md").read_text()
    assert "make test" in (REPO / ".ci/run").read_text()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_are_documented_literals(nb):
    data = json.loads(nb.read_text())
    assert data["metadata"]["kernelspec"]["name"] == "patchforensics"
    params = [c for c in data["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{nb.name}: exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    names = set()
    for stmt in ast.parse(src).body:
        assert isinstance(stmt, ast.AnnAssign), f"{nb.name}: `name: type = value  # help` only"
        ast.literal_eval(stmt.value)  # literals only
        names.add(stmt.target.id)
    for line in src.splitlines():
        assert "  # " in line, f"{nb.name}: parameter without help text: {line}"
    assert {"seed", "smoke", "interactive", "device"} <= names
    assert data["cells"][0]["cell_type"] == "markdown"
