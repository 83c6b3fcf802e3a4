"""Classifier run folders: the one owner of their names, layout, identity and fate.

A run is one classifier trained on one real and one fake dataset. Its folder is

    <checkpoints>/classifiers/<root>/<dataset>_<generator>/<setting>/<arch>_<depth>[_in<N>]_seed<S>

where ``<data root>`` is the folder holding ``real/<dataset>`` and ``fake/<dataset>/<generator>``
(the embedded world's ``default64``, or a root ``patchforensics import`` filled), ``<setting>`` is
``samples`` or ``samples_inversions`` and ``_in<N>`` the network input side when inputs are
upsampled (``load_size``). The command line, the notebooks, ``evaluate``, ``score``,
finetuning and exaggeration all name, find and resolve runs here, so they find the same runs.

The files of a run folder (and nothing else may live there):
``config.json`` (config, data fingerprints, provenance), ``latest.pt`` (resume point),
``best.pt`` (the best validation epoch), ``history.csv``, ``done.json`` (a finished run),
``calibration.json`` and ``maps/`` (caches of evaluation).

What happens when ``train`` meets a folder is decided by :func:`decide`: a finished run of the
same identity is skipped, an interrupted one resumes ("resuming at epoch k"), a finished run whose
only change is a higher epoch cap continues, and a folder holding another run is refused with one
message that says what differs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths

CONFIG = "config.json"
LATEST = "latest.pt"
BEST = "best.pt"
HISTORY = "history.csv"
DONE = "done.json"
CALIBRATION = "calibration.json"
MAPS = "maps"
RUN_FILES = (CONFIG, LATEST, BEST, HISTORY, DONE, CALIBRATION, MAPS)
TRAINING_FILES = (LATEST, BEST, HISTORY, DONE, CONFIG, CALIBRATION)  # removed on a restart
# "paired" (notebook 07): every real's counterpart is the fake of the same name in the fake set
# itself (a manipulated face and the real it was made from), half of each batch's fakes paired.
SETTINGS = ("samples_inversions", "samples", "paired")
# Fields of a training config that do not change what a finished epoch holds: a higher epoch
# cap continues a run, it does not make another one.
CONTINUABLE = ("epochs",)


# --- names ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunName:
    """Everything a run folder's path says: data root, pair, setting, model and seed."""

    root: str  # name of the data root (``default64``, ``paper``)
    dataset: str  # real dataset (``celeba``)
    generator: str  # generator of the training fakes (``dcgan``)
    setting: str  # ``samples_inversions`` or ``samples``
    arch: str
    depth: str
    load_size: int = 0
    seed: int = 0

    @property
    def model(self) -> str:
        """``<arch>_<depth>``, the model's name in every table."""
        return f"{self.arch}_{self.depth}"

    @property
    def leaf(self) -> str:
        """The run folder's own name: ``xception_block2_in192_seed0``."""
        size = f"_in{self.load_size}" if self.load_size else ""
        return f"{self.model}{size}_seed{self.seed}"

    def folder(self) -> Path:
        return run_root(self.root, self.dataset, self.generator, self.setting) / self.leaf


def leaf_name(arch: str, depth: str, load_size: int, seed: int) -> str:
    """A run folder's own name, e.g. ``xception_block2_in192_seed0``."""
    return RunName("", "", "", SETTINGS[0], arch, depth, load_size, seed).leaf


def classifiers_dir() -> Path:
    return paths.checkpoints_dir() / "classifiers"


def run_root(root: str, dataset: str, generator: str, setting: str = SETTINGS[0]) -> Path:
    """The folder of one training pair's runs in one setting:
    ``<checkpoints>/classifiers/<root>/<dataset>_<generator>/<setting>``."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    return classifiers_dir() / root / f"{dataset}_{generator}" / setting


def pair_names(real_dir: str | os.PathLike, fake_dir: str | os.PathLike) -> tuple[str, str, str]:
    """``(data root name, dataset, generator)`` of a training pair's folders.

    Folders laid out as ``ROOT/real/<dataset>`` and ``ROOT/fake/<dataset>/<generator>`` (the
    embedded world, and what ``patchforensics import`` writes when told so) give ``ROOT``'s
    name; other folders give ``custom`` and the folders' own names."""
    real, fake = Path(real_dir).resolve(), Path(fake_dir).resolve()
    if (real.parent.name == "real" and fake.parent.parent.name == "fake"
            and real.parent.parent == fake.parent.parent.parent
            and fake.parent.name == real.name):
        return real.parent.parent.name, real.name, fake.name
    return "custom", real.name, fake.name


def default_run_dir(cfg: Any, real_dir: str | os.PathLike, fake_dir: str | os.PathLike) -> Path:
    """Where ``train`` puts a run when no folder is given (``cfg``: a ``TrainConfig``)."""
    root, dataset, generator = pair_names(real_dir, fake_dir)
    return RunName(root, dataset, generator, cfg.setting, cfg.arch, cfg.depth, cfg.load_size,
                   cfg.seed).folder()


def relative_name(folder: str | os.PathLike) -> str:
    """A run folder as tables record it: relative to the checkpoints dir when below it."""
    p = Path(folder).resolve()
    try:
        return p.relative_to(paths.checkpoints_dir().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def resolve(run: str | os.PathLike) -> Path:
    """A run folder or checkpoint file as given, else below the checkpoints dir (tables record
    runs relative to it). ``FileNotFoundError`` names what was given and where it was looked
    for when neither exists."""
    p = Path(run).expanduser()
    if p.exists() or p.is_absolute():
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such checkpoint or run folder")
        return p
    below = paths.checkpoints_dir() / p
    if below.exists():
        return below
    raise FileNotFoundError(f"{p}: no such checkpoint or run folder (looked in "
                            f"{Path.cwd()} and {paths.checkpoints_dir()})")


def checkpoint_file(run: str | os.PathLike) -> Path:
    """The ``best.pt`` of a run folder, or the file itself when given a file."""
    p = resolve(run)
    return p / BEST if p.is_dir() else p


def run_dir_of(run: str | os.PathLike) -> Path:
    """The run folder of a run folder or of one of its files."""
    p = resolve(run)
    return p if p.is_dir() else p.parent


# --- reading --------------------------------------------------------------------------------------

def read_json(folder: str | os.PathLike, name: str) -> dict[str, Any] | None:
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.is_file() else None


def resolve_recorded(folder: str) -> Path | None:
    """A data folder as a run's ``config.json`` records it (relative to the data dir or the
    project root, or absolute), if it still exists."""
    p = Path(folder)
    for cand in ([p] if p.is_absolute() else [paths.data_dir() / p, paths.root() / p]):
        if cand.is_dir():
            return cand
    return None


def read_config(run: str | os.PathLike) -> dict[str, Any]:
    """A run's ``config.json`` (empty dict when it has none)."""
    return read_json(run_dir_of(run), CONFIG) or {}


def finished(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``done.json`` of a finished run, or None."""
    return read_json(run_dir, DONE)


def stopped_by(run_dir: str | os.PathLike) -> str:
    """What ended a run: ``"rule"`` (the original's patience rule, or a perfect validation
    accuracy), ``"cap"`` (the epoch cap) or ``""`` (not finished, or finished before runs
    recorded why)."""
    why = (finished(run_dir) or {}).get("stopped", "")
    return {"patience": "rule", "perfect": "rule", "epochs": "cap"}.get(why, "")


def read_history(run_dir: str | os.PathLike):
    """The ``history.csv`` of a run as a DataFrame (empty if it has none yet)."""
    import pandas as pd

    path = Path(run_dir) / HISTORY
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def _named_as_now(folder: Path) -> bool:
    """Whether a run folder carries the name :func:`leaf_name` gives its config (folders of
    older versions lack the ``_in<N>`` part)."""
    c = read_config(folder).get("config", {})
    return folder.name == leaf_name(c["arch"], c["depth"], c.get("load_size", 0), c["seed"])


def find_runs(pair_root: str | os.PathLike, seed: int = 0, *,
              load_sizes: dict[str, int] | None = None) -> dict[str, str]:
    """``{model name: run folder}`` of the finished runs of ``seed`` below ``pair_root`` (a
    :func:`run_root`; folders relative to the checkpoints dir when below it), Xception before
    ResNet-18, shallow before deep. ``FileNotFoundError`` when there are none.

    Two finished runs of one model (say the full model of the ``quick`` profile at the faces'
    size and of ``default`` at 192 px) are told apart by ``load_sizes`` (``{model: load
    size}``, e.g. a profile's), else by the folder named as runs name it now; a model that
    stays ambiguous raises, naming the folders."""
    from .models import DEPTHS

    root = Path(pair_root)
    candidates: dict[str, list[Path]] = {}
    for done in sorted(root.glob(f"*/{DONE}")):
        cfg = (read_json(done.parent, CONFIG) or {}).get("config", {})
        if cfg.get("seed") != seed or "arch" not in cfg:
            continue
        candidates.setdefault(f"{cfg['arch']}_{cfg['depth']}", []).append(done.parent)
    found = {}
    for name, folders in candidates.items():
        if len(folders) > 1 and load_sizes and name in load_sizes:
            sized = [f for f in folders if (read_json(f, CONFIG) or {}).get("config", {})
                     .get("load_size", 0) == load_sizes[name]]
            folders = sized or folders
        if len(folders) > 1:  # a folder named as runs names it wins over an older-named one
            named = [f for f in folders if _named_as_now(f)]
            folders = named if len(named) == 1 else folders
        if len(folders) > 1:
            raise ValueError(f"{root}: {len(folders)} finished runs of {name} seed {seed} "
                             f"({', '.join(f.name for f in folders)}); keep one")
        found[name] = relative_name(folders[0])
    if not found:
        raise FileNotFoundError(f"{root}: no finished classifier runs of seed {seed}; train "
                                "them first (notebook 02, or `patchforensics train`)")
    order = [f"{a}_{d}" for a in DEPTHS for d in DEPTHS[a]]
    return {k: found[k] for k in sorted(found, key=lambda k: order.index(k)
                                        if k in order else len(order))}


# --- guards ---------------------------------------------------------------------------------------

def check_out_folder(out: str | os.PathLike) -> None:
    """Refuse a run folder that holds files a run never writes (a folder of images, say):
    training there would mix its files among them. Hidden temporary files are ignored."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder; choose another --out")
    if not out.is_dir():
        return
    strangers = sorted(p.name for p in out.iterdir()
                       if p.name not in RUN_FILES and not p.name.startswith("."))
    if strangers:
        shown = ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more"
                                            if len(strangers) > 3 else "")
        raise ValueError(f"{out}: holds files that are not a run's ({shown}); choose an empty "
                         "or new folder for the run")


def _manifest_roles(folder: Path) -> str | None:
    """``"real"`` or ``"fake"`` when a world manifest above ``folder`` lists it as such."""
    folder = folder.resolve()
    for parent in folder.parents:
        manifest = parent / "manifest.json"
        if manifest.is_file():
            try:
                sets = json.loads(manifest.read_text()).get("sets", {})
            except (ValueError, OSError):
                return None
            try:
                key = folder.relative_to(parent).as_posix()
            except ValueError:
                return None
            return key.split("/")[0] if key in sets else None
    return None


def check_roles(real_dir: str | os.PathLike, fake_dir: str | os.PathLike) -> None:
    """Refuse real and fake folders given the wrong way round, when a world manifest or the
    ``real/``-``fake/`` layout says which is which (a classifier trained on swapped folders
    learns the opposite labels without a word)."""
    real, fake = Path(real_dir), Path(fake_dir)
    if real.resolve() == fake.resolve():
        raise ValueError(f"{real}: the real and the fake folder are the same folder")
    roles = {}
    for given, folder in (("real", real), ("fake", fake)):
        role = _manifest_roles(folder)
        if role is None:  # the import layout: .../real/<dataset>, .../fake/<dataset>/<generator>
            parts = folder.resolve().parts
            role = ("real" if len(parts) > 1 and parts[-2] == "real" else
                    "fake" if len(parts) > 2 and parts[-3] == "fake" else None)
        roles[given] = role
    if roles["real"] == "fake" or roles["fake"] == "real":
        raise ValueError(f"--real {real} and --fake {fake}: the data root says "
                         f"{real} is {roles['real'] or 'unknown'} and {fake} is "
                         f"{roles['fake'] or 'unknown'}; swapped?")


# --- what to do with a folder ---------------------------------------------------------------

class RunConflict(ValueError):
    """A folder holds another run. ``what`` says which folder and what differs; the message
    adds the library's way out, the command line its own (``--out``, ``--force``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}; train into another folder (out_dir=...), or start over "
                         "(force=True)")


@dataclass
class Decision:
    """What ``train`` does with a run folder: ``"skip"`` a finished run, ``"resume"`` an
    interrupted one (or ``"continue"`` a finished one to a higher epoch cap), or ``"fresh"``."""

    action: str
    message: str = ""
    done: dict[str, Any] | None = None


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The config fields that make a run this run (the epoch cap only bounds it)."""
    return {k: v for k, v in config.items() if k not in CONTINUABLE}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["epochs 2 -> 4", "data: fake/train"]``: what differs between two ``config.json``
    records (``config`` fields, then data folders and fingerprints, then world size)."""
    out = []
    a, b = old.get("config", {}), new.get("config", {})
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"{k} {a.get(k)!r} -> {b.get(k)!r}")
    da, db = old.get("data", {}), new.get("data", {})
    for kind in sorted(set(da) | set(db)):
        ka, kb = da.get(kind, {}), db.get(kind, {})
        if ka.get("dir") != kb.get("dir"):
            out.append(f"{kind} folder {ka.get('dir')} -> {kb.get('dir')}")
        for split in sorted((set(ka) | set(kb)) - {"dir"}):
            if ka.get(split) != kb.get(split):
                out.append(f"{kind}/{split} images changed")
    if old.get("world_size", 1) != new.get("world_size", 1):
        out.append(f"processes {old.get('world_size', 1)} -> {new.get('world_size', 1)}")
    return out


def decide(out: Path, record: dict[str, Any], *, force: bool = False,
           replace_stale: bool = False) -> Decision:
    """Decide what training does with folder ``out`` for a run whose new ``config.json``
    record (``config``, ``data``, ``world_size``, ``fingerprint`` of its identity) is
    ``record``. Raises ``ValueError`` saying what differs when the folder holds another run and
    neither ``force`` (start over) nor ``replace_stale`` (a protocol folder whose config
    changed: start over, saying why) is given."""
    check_out_folder(out)
    if force:
        return Decision("fresh", "starting over (--force)" if (out / CONFIG).exists() else "")
    old = read_json(out, CONFIG)
    done = finished(out)
    if old is None:
        if (out / LATEST).exists() or done is not None:
            return Decision("fresh", f"{out}: run files without a config.json; starting over")
        return Decision("fresh")
    if old.get("fingerprint") != record["fingerprint"]:
        diff = differences(old, record) or ["a run of an older version"]
        if replace_stale:
            return Decision("fresh", f"{out}: holds a run of another config "
                                     f"({'; '.join(diff)}): training it again")
        raise RunConflict(f"{out}: holds another run ({'; '.join(diff)})")
    new_cap = record["config"]["epochs"]
    if done is not None:
        ran = int(done.get("epochs", 0))
        if new_cap < ran:
            if replace_stale:
                return Decision("fresh", f"{out}: ran {ran} epochs, the cap is now {new_cap}: "
                                         "training it again")
            raise RunConflict(f"{out}: holds a run of {ran} epochs (epochs {ran} -> {new_cap}; "
                              "a lower cap is another run)")
        if done.get("stopped") == "epochs" and new_cap > ran:
            return Decision("continue", f"{out}: continuing the finished run from epoch {ran} "
                                        f"to the new cap of {new_cap}", done)
        return Decision("skip", "", done)
    if (out / LATEST).exists():
        return Decision("resume")  # the epoch is known once latest.pt is read
    return Decision("fresh")
