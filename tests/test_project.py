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


# --- structure: layers without cycles ----------------------------------------------------------

PKG = Path(__file__).resolve().parents[1] / "lib" / "patchforensics"


def sibling_imports() -> dict[str, dict[str, bool]]:
    """``{module: {imported sibling: at module top?}}`` over every ``from .x import`` of the
    package, inside functions too (a lazy import still couples the modules)."""
    mods = {".".join(f.relative_to(PKG).with_suffix("").parts).removesuffix(".__init__"): f
            for f in PKG.rglob("*.py")}
    out: dict[str, dict[str, bool]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = package[:len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}".lstrip(".")
                dep = full if full in mods else target
                if dep in mods and dep != name:
                    out.setdefault(name, {})[dep] = out.get(name, {}).get(dep, False) or \
                        id(node) in top
    return out


def test_the_package_has_no_import_cycle():
    """Layers in data-flow order (lib/patchforensics/README.md): a module never imports, even
    lazily, one that imports it back; the old cycles ran evaluate -> train -> widgets -> ... ->
    evaluate and viz <-> evaluate/parts."""
    graph = {m: set(d) for m, d in sibling_imports().items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError(" -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_name_crosses_modules_of_the_library():
    """A name with a leading underscore is its module's own: another module of the package, or
    a test, imports only public names (``from .api import load as _load`` imports a public
    one)."""
    import ast

    crossing = []
    files = [*(REPO / "lib" / "patchforensics").rglob("*.py"), *(REPO / "tests").glob("*.py")]
    for path in sorted(files):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or "patchforensics" in
                                                     (node.module or "")):
                crossing += [f"{path.relative_to(REPO)}:{node.lineno} {a.name}"
                             for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert not crossing, crossing


def test_no_function_of_the_library_is_over_60_lines():
    """A function that does not fit a screen does several things: split it (issue 26)."""
    import ast

    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
            f"({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted((REPO / "lib" / "patchforensics").rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > 60]
    assert not long, long


def test_sibling_imports_sit_at_module_top():
    """Lazy sibling imports only where the command line must start without torch (`--help`
    answers in well under a second): the package (its `load`), `cli`, its parser `cli_parser`
    and what they read at start (`notebooks` and its `estimate`; `protocol` and `runs` for
    train's defaults)."""
    lazy_ok = {"", "__main__", "cli", "cli_parser", "estimate", "notebooks", "protocol", "runs"}
    lazy = sorted(f"{m} -> {d}" for m, deps in sibling_imports().items()
                  for d, top in deps.items() if not top and m not in lazy_ok)
    assert lazy == [], lazy


def _section(text: str, heading: str) -> str:
    """The body of the README section whose ``## `` heading starts with ``heading``."""
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 4)
    return text[start: end if end > 0 else None]


def reference_numbers() -> set[str]:
    """Every numeric cell of the committed reference tables, as text at 1 to 4 decimals (and
    as a percentage at 0 and 1 decimals), so a number printed rounded is found."""
    import re

    import pandas as pd

    out: set[str] = set()
    for csv in sorted((REPO / "results" / "reference").glob("*.csv")):
        frame = pd.read_csv(csv, comment="#")
        for text in frame.select_dtypes(exclude="number").to_numpy().ravel():  # "median 1.08 [..]"
            out |= set(re.findall(r"\d+\.\d+", str(text)))
        values = frame.select_dtypes("number").to_numpy().ravel()
        for v in values[~pd.isna(values)].astype(float):
            for d in range(1, 5):
                out |= {f"{v:.{d}f}", f"{abs(v):.{d}f}"}
            out |= {f"{100 * v:.0f}", f"{100 * v:.1f}"}
    return out


def test_every_decimal_of_what_we_found_is_in_a_reference_table():
    """README "What we found" speaks only from committed tables: a decimal number there that no
    table of results/reference/ holds (at the printed precision) is stale or unsourced."""
    import re

    section = _section((REPO / "README.md").read_text(), "What we found")
    known = reference_numbers()
    numbers = re.findall(r"(?<![\w.])[-+]?\d+\.\d+(?![\w.])", section)
    assert numbers, "the section has no numbers: is the heading still there?"
    missing = sorted({n for n in numbers if n.lstrip("+-") not in known})
    assert not missing, f"in README 'What we found' but in no reference table: {missing}"


def test_every_link_of_the_readme_and_the_docs_resolves():
    """The README is short and points to docs/ (issue 27): every relative link of the README,
    the package README and docs/*.md names a file or folder of the repository."""
    import re

    pages = [REPO / "README.md", REPO / "lib" / "patchforensics" / "README.md",
             *(REPO / "docs").glob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"(https?:|mailto:|#)", target):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken
    assert len((REPO / "README.md").read_text().splitlines()) <= 160


def test_the_number_check_can_fail(tmp_path):
    assert "0.5000" in reference_numbers() or "1.0000" in reference_numbers()
    assert "123.4567" not in reference_numbers()


def test_lists_at_the_extension_points_follow_their_registries():
    """A generator, score mode, manipulation or notebook is added in its own place; the lists
    that depend on it are derived, or (where a torch-free module keeps a copy) held equal here."""
    from patchforensics import cli_parser, manipulate, notebooks, probe, score_modes
    from patchforensics.config import WorldConfig
    from patchforensics.generators import GENERATORS, LIKELIHOOD, WORLD_GENERATORS

    # config is torch-free, so it keeps the names; they are the world's generators with a latent
    with_latent = {n for names in WORLD_GENERATORS.values() for n in names
                   if GENERATORS[n].kind in ("gan", "vae")}
    assert set(WorldConfig().invert) == with_latent
    assert probe.BLURRY == LIKELIHOOD
    assert cli_parser.MODES is score_modes.MODES == tuple(score_modes.SCORE_MODES)
    assert manipulate.MANIPULATIONS == tuple(manipulate.RECIPES)
    folder = sorted(p.stem for p in (REPO / "notebooks").glob("0*.ipynb"))
    assert list(notebooks.series()) == folder
