"""A static site of the last run, to read in a browser from the file system: ``index.html`` (the
run report: findings, tables, figures, provenance) and one page per executed notebook, with the
figures as files beside them; no server, and nothing fetched from the network.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from . import paths
from .images import atomic_write_text
from .report import write_report

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }
nav { margin-bottom: 1.5em; padding-bottom: .5em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1em; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 85%; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 85%; }
.jp-InputArea, .input { background: #f6f6f6; }
"""


def _page(title: str, body: str, nav: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><nav>{nav}</nav>\n{body}\n</body></html>\n")


def _nav(names: list[str], prefix: str) -> str:
    links = [f'<a href="{prefix}index.html">Report</a>']
    links += [f'<a href="{prefix}notebooks/{n}.html">{html.escape(n)}</a>' for n in names]
    return " ".join(links)


def notebook_html(path: Path) -> str:
    """The body of one executed notebook as HTML (nbconvert's ``basic`` template: no scripts,
    no styles from a network; output images stay embedded as data)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="basic").from_notebook_node(
        nbformat.read(path, as_version=4))
    return body


def write_site(*, smoke: bool = False, world_seed: int = 0,
               notebooks_dir: str | Path | None = None) -> Path:
    """Write ``results/site/``: ``index.html`` from the run report (``report.write_report``,
    written anew), ``notebooks/<name>.html`` per executed notebook in ``notebooks_dir``
    (default ``results/notebooks``), and ``figures/`` (a copy of ``results/figures``, which the
    report and the notebook pages link). Returns the index's path."""
    import mistune

    results = paths.results_dir()
    site = results / "site"
    executed = sorted(Path(notebooks_dir or results / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    names = [p.stem for p in executed]
    figures = sorted((results / "figures").glob("*.png"))
    if (site / "figures").exists():
        shutil.rmtree(site / "figures")  # figures of an earlier run do not linger
    (site / "figures").mkdir(parents=True)
    for f in figures:
        shutil.copy2(f, site / "figures" / f.name)
    for path in executed:
        own = [f.name for f in figures if f.name.startswith(path.stem[:3])]
        links = "".join(f'<li><a href="../figures/{html.escape(n)}">{html.escape(n)}</a></li>'
                        for n in own)
        body = (f"<h1>{html.escape(path.stem)}</h1>"
                + (f"<p>Figures of this notebook, as files:</p><ul>{links}</ul>" if own else "")
                + notebook_html(path))
        atomic_write_text(site / "notebooks" / f"{path.stem}.html",
                          _page(path.stem, body, _nav(names, "../")))
    report = write_report(smoke=smoke, world_seed=world_seed).read_text()
    body = mistune.html(report)
    body = re.sub(r'<img src="(figures/[^"]+)"',
                  lambda m: f'<a href="{m.group(1)}"><img src="{m.group(1)}"', body)
    body = re.sub(r'(<img src="figures/[^"]+"[^>]*>)', r"\1</a>", body)
    pages = "".join(f'<li><a href="notebooks/{n}.html">{html.escape(n)}</a></li>'
                    for n in names)
    body += f"<h2>The notebooks of this run</h2><ul>{pages}</ul>"
    index = site / "index.html"
    atomic_write_text(index, _page("patchforensics: the last run", body, _nav(names, "")))
    return index
