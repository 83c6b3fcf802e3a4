"""The commands agree with each other and with docs/cli.md: every option its "Command
line" section shows exists, every option and command exists there too; `--help` shows examples
and defaults and imports no torch; `train`'s defaults are notebook 02's; folders are searched
recursively everywhere unless `--no-recursive`, and every command's last line counts the images
it read and skipped."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from patchforensics import cli_parser, protocol
from patchforensics.cli import main
from patchforensics.cli_parser import build_parser

from conftest import REPO, write_planted

SUMMARY = re.compile(r"^(\S+): (\d+) image\(s\) read, (\d+) skipped(?:, (\d+) in subfolders)?",
                     re.M)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def long_options(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings
            if s.startswith("--") and s != "--help"}


def readme_commands() -> dict[str, set[str]]:
    """``{command: options}`` of the code block under docs/cli.md's "## Command line"."""
    text = (REPO / "docs" / "cli.md").read_text()
    section = text[text.index("## Command line"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    out: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        code = line.split("#")[0]
        if m := re.match(r"patchforensics ([a-z-]+)", code):
            current = m.group(1)
        elif "-m patchforensics train" in code:
            current = "train"
        elif not line.startswith(" "):
            current = None
        if current:
            out.setdefault(current, set()).update(re.findall(r"--[a-z][a-z0-9-]*", code))
    out.get("train", set()).discard("--nproc-per-node")  # torchrun's own option
    return out


def test_readme_command_line_section_matches_the_parser():
    parser, readme = subcommands(), readme_commands()
    assert set(readme) == set(parser), "commands in the README vs the parser"
    for name, p in parser.items():
        shown, real = readme[name], long_options(p)
        assert not shown - real, f"{name}: the README shows options the parser lacks"
        assert not real - shown, f"{name}: options missing from the README"


def test_every_subcommand_help_has_examples_and_defaults():
    for name, p in subcommands().items():
        text = p.format_help()
        assert "examples:\n  patchforensics" in text or "examples:\n  torchrun" in text, name
        for a in p._actions:  # every option with a value default states it
            if a.option_strings and a.default not in (None, "", False, True, argparse.SUPPRESS):
                assert a.help and ("default:" in p._get_formatter()._get_help_string(a)), \
                    (name, a.dest)
    text = " ".join(subcommands()["train"].format_help().split())
    assert f"--epochs EPOCHS maximum epochs (notebook 02's cap; the original's was 1000) " \
           f"(default: {protocol.profile('default').epochs})" in text


def test_constants_copied_into_the_cli_match_the_library():
    from patchforensics.models import DEPTHS
    from patchforensics.score_modes import MODES

    assert cli_parser.MODES is MODES  # imported, not copied: one list of score modes
    assert cli_parser.ARCHS == tuple(DEPTHS)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"]])
def test_help_imports_no_torch_and_no_scipy(argv):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "patchforensics", *argv],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "usage: patchforensics" in done.stdout
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in done.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "patchforensics.cli" in imported  # the check can see imports at all
    assert not {m for m in imported if m.split(".")[0] in ("torch", "scipy")}


def test_train_defaults_are_notebook_02s_for_each_model(tmp_path):
    """The config `train` builds from its defaults equals the one notebook 02 trains
    (protocol.train_profile -> grids.train_grid) for every model of the default profile."""
    from patchforensics.cli import config_from_args
    from patchforensics.config import from_dict, to_dict
    from patchforensics.devices import resolve_device
    from patchforensics.generators.training import resolve_precision
    from patchforensics.train_config import TrainConfig

    p = protocol.profile("default")
    fake = tmp_path / "dcgan"
    (tmp_path / "dcgan_inverted" / "train").mkdir(parents=True)
    base = TrainConfig(batch_size=p.batch_size, epochs=p.epochs,
                       steps_per_epoch=p.steps_per_epoch,
                       precision=resolve_precision(p.precision, resolve_device(None)))
    base = replace(base, setting=p.settings[0], seed=p.seeds[0])
    for arch, depth in p.models:
        args = build_parser().parse_args(["train", "--real", str(tmp_path / "r"), "--fake",
                                          str(fake), "--arch", arch, "--depth", depth])
        expected = from_dict(TrainConfig, {**to_dict(base), "arch": arch, "depth": depth,
                                           **p.overrides()[f"{arch}_{depth}"]})
        assert config_from_args(args) == expected, (arch, depth)
    # no inversions beside the fake set: the samples-only ablation, said in the summary line
    args = build_parser().parse_args(["train", "--real", "r", "--fake", str(tmp_path / "x")])
    assert config_from_args(args).setting == "samples"
    # another load size than notebook 02's drops its window (it belongs to that size)
    args = build_parser().parse_args(["train", "--real", "r", "--fake", str(fake),
                                      "--load-size", "0"])
    assert (config_from_args(args).load_size, config_from_args(args).crop) == (0, 0)


def test_unknown_device_is_one_line_before_torch(capsys):
    for argv in (["score", "ckpt", "x", "--device", "gpu"],
                 ["train", "--real", "r", "--fake", "f", "--device", "cuda:x"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1, err
        assert "unknown device" in err and "cpu, cuda, cuda:N, mps or auto" in err
    assert [cli_parser.device_arg(d) for d in ("cpu", "CUDA", "cuda:1", "mps", "auto")] == \
        ["cpu", "cuda", "cuda:1", "mps", "auto"]


# --- recursion and counts ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """A one-step classifier (trained by `train`, whose summary line counts the train and val
    images it read) and test folders whose last 3 images sit in a subfolder."""
    base = tmp_path_factory.mktemp("cli_counts")
    real = write_planted(base / "real", 0, 0, n_train=8, n_val=4, n_test=7)
    fake = write_planted(base / "fake", 50_000, 10, n_train=8, n_val=6, n_test=5)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--real", str(real), "--fake", str(fake), "--depth", "1",
                     "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "1",
                     "--load-size", "0", "--device", "cpu", "--quiet",
                     "--out", str(base / "run")]) == 0
    assert last_summary(printed.getvalue(), "train") == (8 + 4 + 8 + 6, 0, 0)
    assert "setting samples, real train 8, real val 4, fake train 8, fake val 6" in \
        printed.getvalue()
    for folder in (real / "test", fake / "test"):
        (folder / "sub").mkdir()
        for f in sorted(folder.glob("*.png"))[-3:]:
            shutil.move(f, folder / "sub" / f.name)
    return {"run": base / "run", "real": real / "test", "fake": fake / "test"}


def last_summary(out: str, command: str) -> tuple[int, int, int]:
    found = [m for m in SUMMARY.finditer(out) if m.group(1) == command]
    assert found, out
    m = found[-1]
    return int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)


def test_evaluate_recurses_into_subfolders_and_counts(tiny_run, capsys, one_thread):
    argv = ["evaluate", str(tiny_run["run"]), "--real-images", str(tiny_run["real"]),
            "--fake-images", f"f={tiny_run['fake']}", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert last_summary(out, "evaluate") == (12, 0, 0)
    assert "real 7, f 5" in out
    assert main([*argv, "--no-recursive"]) == 0
    out = capsys.readouterr().out
    assert last_summary(out, "evaluate") == (6, 0, 6)
    assert "real 4, f 2" in out


def test_score_audit_import_recurse_unless_told_and_count(tiny_run, capsys, tmp_path,
                                                          one_thread):
    real = tiny_run["real"]
    assert main(["score", str(tiny_run["run"]), str(real), "--device", "cpu", "--quiet"]) == 0
    assert last_summary(capsys.readouterr().out, "score") == (7, 0, 0)
    assert main(["score", str(tiny_run["run"]), str(real), "--device", "cpu", "--quiet",
                 "--no-recursive"]) == 0
    assert last_summary(capsys.readouterr().out, "score") == (4, 0, 3)
    assert main(["audit", str(real), str(tiny_run["fake"])]) == 0
    assert last_summary(capsys.readouterr().out, "audit") == (12, 0, 0)
    assert main(["audit", str(real), str(tiny_run["fake"]), "--no-recursive", "--quiet"]) == 0
    assert last_summary(capsys.readouterr().out, "audit") == (6, 0, 6)
    assert main(["import", str(real), str(tmp_path / "a"), "--size", "16", "--quiet"]) == 0
    assert last_summary(capsys.readouterr().out, "import") == (7, 0, 0)
    assert (tmp_path / "a" / "sub").is_dir()
    assert main(["import", str(real), str(tmp_path / "b"), "--size", "16", "--quiet",
                 "--no-recursive"]) == 0
    assert last_summary(capsys.readouterr().out, "import") == (4, 0, 3)
    assert not (tmp_path / "b" / "sub").exists()
