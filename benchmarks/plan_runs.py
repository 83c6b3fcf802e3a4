"""Where the plan's grid stands (issue 24): one line per run of a protocol profile, read from the
run folders notebook 02 and ``patchforensics grid`` write, finished or not.

Per run: its state (``finished``; ``started``: running, or stopped and resumable; ``missing``),
epochs, best epoch, what ended it (``rule`` or ``cap``), the best validation per-patch accuracy,
wall seconds, the median seconds per epoch (training and validation; a resumed run's gap is not
an epoch), the CPU and precision its config recorded (not its torch threads: runs do not record
them), and, with ``--adequacy``, the plan's
adequacy figures (validation AUC and its lower 95 % bound, ``checkpoint.calibration``; fitted
once and kept in the run folder). It trains nothing.

    python benchmarks/plan_runs.py                       # the default profile, embedded world
    python benchmarks/plan_runs.py --adequacy --csv records/plan_runs.csv
    python benchmarks/plan_runs.py --profile manipulations --setting paired \
        --generator faceswap deepfake reenact neuraltex   # notebook 07's grids
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from machine import cpu_info

from patchforensics import protocol, runs


def run_row(model: str, seed: int, folder: Path, *, adequacy: bool) -> dict[str, object]:
    """One run's line (see the module docstring)."""
    row: dict[str, object] = {"model": model, "seed": seed}
    hist = runs.read_history(folder)
    done = runs.finished(folder)
    started = (folder / runs.CONFIG).exists() or (folder / runs.LATEST).exists()
    state = "finished" if done else "started" if started else "missing"
    row["state"] = state
    if hist.empty:
        return row
    steps = hist["seconds"].diff().fillna(hist["seconds"].iloc[0])
    best = int(hist["val_patch_acc"].idxmax())
    cfg = runs.read_config(folder)
    row.update({
        "epochs": int(hist["epoch"].iloc[-1]), "best_epoch": int(hist["epoch"].iloc[best]),
        "stopped_by": runs.stopped_by(folder), "best_val_patch_acc":
        round(float(hist["val_patch_acc"].iloc[best]), 4),
        "seconds": round(float(done["seconds"]) if done else float(hist["seconds"].iloc[-1])),
        "s_per_epoch": round(float(steps.median()), 2),
        "cpu": cfg.get("provenance", {}).get("cpu", ""),
        "precision": cfg.get("config", {}).get("precision", "")})
    if adequacy and done:
        from patchforensics import checkpoint

        cal = checkpoint.calibration(checkpoint.load_checkpoint(folder / "best.pt",
                                                                device="cpu"), device="cpu")
        if cal is not None:
            row.update({"val_auc": round(cal.val["auc"], 4),
                        "val_auc_low": round(cal.val["auc_ci_low"], 4),
                        "adequate": checkpoint.adequate(cal)})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--world", default="default64", help="the data root's name")
    ap.add_argument("--dataset", default="celeba")
    ap.add_argument("--generator", nargs="+", default=["dcgan"],
                    help="fake set(s) of the training pair(s): one table row per run of each")
    ap.add_argument("--setting", default=protocol.PRIMARY_SETTING)
    ap.add_argument("--adequacy", action="store_true",
                    help="fit (or read) each finished run's validation AUC and its lower bound")
    ap.add_argument("--csv", default="", help="also write the table here")
    args = ap.parse_args()
    p = protocol.profile(args.profile)
    rows = []
    for gen in args.generator:
        folders = protocol.run_folders(p, args.world, args.dataset, gen, args.setting)
        rows += [{"generator": gen, **run_row(m, s, f, adequacy=args.adequacy)}
                 for (m, s), f in sorted(folders.items())]
    table = pd.DataFrame(rows)
    for col in ("epochs", "best_epoch", "seconds"):  # whole numbers, blank where unknown
        if col in table:
            table[col] = table[col].astype("Int64")
    info = cpu_info()
    print(f"# profile {p.name}, {args.world} {args.dataset} vs {', '.join(args.generator)}, "
          f"setting {args.setting}; read on {info['cpu']} ({info['cpus']} CPUs)")
    print(table.to_string(index=False))
    ended = table[table["state"] == "finished"]
    if len(ended):
        print(f"# finished {len(ended)} of {len(table)}; ended by the cap: "
              f"{(ended['stopped_by'] == 'cap').sum()}; training seconds of the finished runs: "
              f"{int(ended['seconds'].sum())}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
