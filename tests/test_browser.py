"""The patch explorer in a real browser: JupyterLab started here on 127.0.0.1, Debian's chromium
driven by Playwright, notebook 04 run with ``interactive=True``, the image slider moved, and the
explorer's picture checked to change. Screenshots go to ``results/browser/``.

Skipped when chromium or Playwright is missing; ``make test-browser`` installs both and runs it
(``.ci/run`` does too). Every wait is on the page's DOM or the server's HTTP status, never a sleep.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from patchforensics import notebooks, paths

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (make test-browser)"),
]
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="no playwright (make test-browser)")

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "results" / "browser"
START_TIMEOUT_S = 120  # JupyterLab up
RUN_TIMEOUT_S = int(os.environ.get("BROWSER_TEST_TIMEOUT", "600"))  # run to the explorer
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll the server's status endpoint (each request bounded) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture()
def lab(project_env, tmp_path):
    """Notebook 04, parameterized (smoke, interactive), served by a fresh JupyterLab."""
    import papermill as pm

    # The explorer needs notebook 02's smoke runs (skipped when they exist).
    notebooks.run_notebook("02_train_classifiers", tmp_path / "executed",
                           {"smoke": True, "interactive": False})
    root = tmp_path / "lab"
    root.mkdir()
    pm.execute_notebook(str(notebooks.notebook_path("04_face_parts")),
                        str(root / "04_face_parts.ipynb"),
                        parameters={"smoke": True, "interactive": True},
                        kernel_name=notebooks.KERNEL, prepare_only=True)
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    log = open(tmp_path / "jupyter.log", "w")  # noqa: SIM115 - closed below
    args = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # CI machines and containers run as root
        args.append("--allow-root")
    # Runtime files (cookie secret, kernel connection files) and workspaces stay in tmp.
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "get notified about Jupyter news?" toast over the screenshots.
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings")}
    proc = subprocess.Popen(args, cwd=paths.root(), stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc,
                        START_TIMEOUT_S)
        yield f"http://127.0.0.1:{port}/lab/tree/04_face_parts.ipynb?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_patch_explorer_slider_changes_the_picture(lab):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(RUN_TIMEOUT_S * 1000)
        try:
            page.goto(lab)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
            # Wait for the kernel to be idle, or "Run All" queues behind its start-up.
            page.wait_for_selector(".jp-StatusBar-Widget :text('Idle')")
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            explorer = page.locator(".widget-vbox:has(.widget-hslider)").last
            picture = explorer.locator(".widget-output img").first
            picture.wait_for(state="visible")
            first = picture.get_attribute("src")
            # The dropdown: switch to the reals (faces the parser finds, even in smoke mode).
            explorer.locator(".widget-dropdown", has_text="set").locator("select").select_option(
                "real")
            playwright_api.expect(picture).not_to_have_attribute("src", first,
                                                                 timeout=RUN_TIMEOUT_S * 1000)
            before = picture.get_attribute("src")
            explorer.screenshot(path=str(SHOTS / "patch_explorer_before.png"))
            assert page.locator(".jp-RenderedText[data-mime-type="
                                "'application/vnd.jupyter.stderr'] :text('Traceback')"
                                ).count() == 0
            slider = explorer.locator(".widget-hslider", has_text="image").first
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            # The Output re-renders a new <img>: the locator re-resolves while expect() retries.
            playwright_api.expect(picture).not_to_have_attribute("src", before,
                                                                 timeout=RUN_TIMEOUT_S * 1000)
            after = picture.get_attribute("src")
            explorer.screenshot(path=str(SHOTS / "patch_explorer_after.png"))
            readout = slider.locator(".widget-readout").first.inner_text()
        except Exception:
            page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert before != after and before.startswith("data:image/png")
    assert readout.strip() == "1"
    assert (SHOTS / "patch_explorer_after.png").stat().st_size > 5000


def test_the_run_site_opens_from_the_file_system(project_env, tmp_path):
    """``results/site`` (issue 27) in the real browser, from file://: the report page and every
    notebook page load, every image is decoded (none broken) and the notebook links work."""
    import base64
    import io

    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from patchforensics.site import write_site

    results = paths.results_dir()
    (results / "figures").mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    (results / "figures" / "03_ap_by_depth_smoke32.png").write_bytes(buf.getvalue())
    executed = tmp_path / "executed"
    executed.mkdir()
    for name in ("01_preprocessing", "03_evaluate_generalization"):
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name}"),
            nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
                "display_data",
                data={"image/png": base64.b64encode(buf.getvalue()).decode()})])])
        nbformat.write(nb, executed / f"{name}.ipynb")
    check_site(write_site(smoke=True, notebooks_dir=executed),
               ["01_preprocessing", "03_evaluate_generalization"])


def test_the_site_of_the_last_make_smoke_opens(project_env):
    """The site `make smoke` wrote into the repository's results/ (CI runs `make smoke` before
    this test): every notebook of the series has its page, and all of them load and decode."""
    index = REPO / "results" / "site" / "index.html"
    if not index.exists():
        pytest.skip("no results/site: run `make smoke` first")
    check_site(index, list(notebooks.series()))


def check_site(index: Path, names: list[str]) -> None:
    """Open ``index`` from file:// in chromium: it links a page per notebook of ``names``,
    and on it and every notebook page every image is decoded (none broken)."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(index.as_uri())
            links = page.locator("a[href^='notebooks/']")
            hrefs = sorted({links.nth(i).get_attribute("href") for i in range(links.count())})
            assert hrefs == [f"notebooks/{n}.html" for n in sorted(names)]
            assert page.locator("img").count() >= 1  # the report's figures
            for url in [index.as_uri(), *((index.parent / h).as_uri() for h in hrefs)]:
                page.goto(url)
                broken = page.evaluate("[...document.images].filter(i => !i.complete || "
                                       "i.naturalWidth === 0).map(i => i.src)")
                assert broken == [], (url, broken)
            page.goto(index.as_uri())
            page.click(f"text={names[-1]} >> nth=-1")
            assert page.locator("h1", has_text=names[-1]).count() >= 1
        finally:
            browser.close()
