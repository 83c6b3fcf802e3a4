"""Reading images safely and writing files atomically.

Every image that enters the project (real photos, generator samples, a user's folder) is read
here, so that bad input gets one clear message naming the file and the problem, and so that
conversions that would otherwise be silent (16-bit to 8-bit, CMYK, palettes, EXIF rotation) are
done correctly and reported. Every file the project writes goes through ``atomic_write_*``: a
killed run leaves at most a ``*.tmp-*`` file that nothing trusts, never a half-written output.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from . import paths

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_PIXELS = 50_000_000  # ~7000x7000; larger files are refused before decoding (bombs)
MIN_SIDE = 16  # smaller images carry no face to speak of; refused rather than blown up


class ImageError(ValueError):
    """A file that cannot be used as an image; ``str()`` names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_image(
    path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> tuple[np.ndarray, list[str]]:
    """Read one image file as RGB.

    Returns ``(array, notes)``: ``array`` is HxWx3 uint8 in [0, 255]; ``notes`` lists the
    conversions applied (e.g. ``"EXIF orientation 6 applied"``, ``"16-bit scaled to 8-bit"``),
    empty for a plain 8-bit RGB file. Raises :class:`ImageError` for an empty, unreadable,
    truncated, non-image, tiny, oversized or partly transparent file. Never modifies the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageError(path, f"cannot be read ({err.strerror or err})") from err
    if size == 0:
        raise ImageError(path, "is empty (0 bytes)")
    return _decode(path, path, max_pixels, min_side)


def decode_image(
    data: bytes, label: str, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> tuple[np.ndarray, list[str]]:
    """Like :func:`read_image` for bytes in memory (e.g. a file inside a wheel named ``label``)."""
    if not data:
        raise ImageError(label, "is empty (0 bytes)")
    return _decode(io.BytesIO(data), label, max_pixels, min_side)


def _decode(
    source: Path | io.BytesIO, label: str | os.PathLike, max_pixels: int, min_side: int
) -> tuple[np.ndarray, list[str]]:
    try:
        with warnings.catch_warnings():
            # PIL warns above its own bomb limit; we apply ours below with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        label,
                        f"is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                        "(possible decompression bomb)",
                    )
                if min(w, h) < min_side:
                    raise ImageError(label, f"is {w}x{h}, smaller than {min_side} px on a side")
                im.load()  # decode now so truncation surfaces here, not later
                return _to_rgb(label, im)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(label, f"is too large to decode safely ({err})") from err
    except Image.UnidentifiedImageError as err:
        raise ImageError(label, "is not an image file PIL can identify") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(label, f"cannot be decoded ({err})") from err


def _to_rgb(path: str | os.PathLike, im: Image.Image) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF orientation {orientation} applied")
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy(), notes
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # PIL's convert("L") clips 16-bit values instead of scaling them: a silent wrong result.
        arr = np.asarray(im).astype(np.float64)
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise ImageError(path, f"has {mode} pixel values outside 0..65535")
        gray = np.round(arr / 257.0).astype(np.uint8)
        notes.append(f"16-bit ({mode}) scaled to 8-bit")
        return np.repeat(gray[..., None], 3, axis=2), notes
    if mode == "F":
        raise ImageError(path, "is a floating-point image; save it as 8-bit RGB first")
    if mode in ("P", "PA") or (mode in ("RGBA", "LA", "RGBa", "La")):
        if mode in ("P", "PA"):
            notes.append("palette converted to RGB")
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[..., 3]
        if alpha.min() < 255:
            frac = float((alpha < 255).mean())
            raise ImageError(
                path,
                f"has transparency ({frac:.1%} of pixels not opaque); the pipeline will not "
                "invent a background: flatten it first",
            )
        if mode not in ("P", "PA"):
            notes.append(f"opaque alpha channel dropped ({mode})")
        return rgba[..., :3].copy(), notes
    if mode in ("L", "1"):
        notes.append(f"grayscale ({mode}) replicated to 3 channels")
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy(), notes
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"{mode} converted to RGB")
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy(), notes
    raise ImageError(path, f"has unsupported pixel mode {mode!r}")


def center_box(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(top, left, side)`` of the centre square of an image of ``shape`` (H, W[, C]): the crop
    every prepared image is made from (``preprocess.center_square``), and where a JPEG frame's
    blocks sit on it (``jpeg``)."""
    h, w = shape[:2]
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by extension, case-insensitive), sorted by relative path.

    Symbolic links to directories are not followed, so a link loop cannot hang the walk.
    Raises ``FileNotFoundError`` / ``NotADirectoryError`` naming the folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: is not a folder")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found.extend(
            Path(dirpath) / f
            for f in filenames
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def iter_chunks(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            yield block


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    for block in iter_chunks(Path(path)):
        h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- cached file hashes ---------------------------------------------------------------------------
# Fingerprinting a 100k-image world hashed every byte on every start. Hashes are kept in a small
# SQLite file under ``paths.cache_dir()``, keyed by the resolved path and checked against the
# file's (size, mtime_ns, ctime_ns, inode, device). ctime cannot be set by user code (``touch``,
# ``rsync -t`` and ``os.utime`` move mtime but bump ctime), and an entry is only written when the
# file's ctime is RACY_NS older than the moment hashing began: a file rewritten within the same
# timestamp tick as its hashing ("racy git") therefore has no entry and is always hashed again.
HASH_CACHE_ENV = "PATCHFORENSICS_HASH_CACHE"  # "0": never read or write the cache
HASH_CACHE_NAME = "sha256.sqlite"
RACY_NS = 2_000_000_000  # covers filesystems with 1-2 s timestamps (FAT, some network mounts)
_clock = time.time_ns  # tests move it forward to make a fresh file old enough to cache
_cache_warned = False


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _hash_db():
    """The cache connection, or None when disabled or unusable (then everything is hashed)."""
    import sqlite3


    if os.environ.get(HASH_CACHE_ENV, "1") == "0":
        return None
    db = paths.cache_dir() / HASH_CACHE_NAME
    # A long timeout: torchrun ranks start together and all fingerprint the same files.
    con = sqlite3.connect(db if db.parent.is_dir() or _mkdir(db.parent) else ":memory:",
                          timeout=120)
    con.execute("CREATE TABLE IF NOT EXISTS sha256 (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER, dev INTEGER, "
                "hashed_at_ns INTEGER, sha256 TEXT)")
    return con


def _mkdir(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return True
    except OSError:
        return False


def sha256_files(files: Sequence[str | os.PathLike]) -> list[str]:
    """Hex SHA-256 of each file, in order, through the on-disk hash cache: a file whose size,
    mtime, ctime, inode and device match its entry is not read again; any other file is hashed
    (and recorded once its ctime is old enough to be trusted, see ``RACY_NS``). A cache that
    cannot be opened or written (read-only data dir, corrupt file) is skipped with one warning;
    results never depend on it. Raises ``FileNotFoundError`` naming a missing file."""
    import sqlite3

    resolved = [str(Path(f).resolve()) for f in files]
    stats = []
    for f, r in zip(files, resolved, strict=True):
        try:
            stats.append(_stat_key(os.stat(r)))
        except FileNotFoundError:
            raise FileNotFoundError(f"{f}: no such file") from None
    known: dict[str, tuple] = {}
    con = None
    try:
        con = _hash_db()
        if con is not None:
            unique = sorted(set(resolved))
            for at in range(0, len(unique), 500):  # SQLite's bound-parameter limit is 999+
                chunk = unique[at: at + 500]
                rows = con.execute("SELECT path, size, mtime_ns, ctime_ns, ino, dev, "
                                   "hashed_at_ns, sha256 FROM sha256 WHERE path IN "
                                   f"({','.join('?' * len(chunk))})", chunk)
                known.update((row[0], row[1:]) for row in rows)
    except sqlite3.Error as err:
        con = _cache_failed(con, err)
    out: list[str] = []
    fresh: dict[str, tuple] = {}
    for r, st in zip(resolved, stats, strict=True):
        entry = known.get(r) or fresh.get(r)
        if entry is not None and tuple(entry[:5]) == st and st[2] < entry[5] - RACY_NS:
            out.append(entry[6])
            continue
        started = _clock()
        digest = sha256_file(r)
        after = _stat_key(os.stat(r))
        if after == st and st[2] < started - RACY_NS:  # unchanged while read, and old enough
            fresh[r] = (*st, started, digest)
        out.append(digest)
    if con is not None and fresh:
        try:
            with con:  # one transaction for the whole batch
                con.executemany("INSERT OR REPLACE INTO sha256 VALUES (?,?,?,?,?,?,?,?)",
                                [(r, *v) for r, v in fresh.items()])
        except sqlite3.Error as err:
            con = _cache_failed(con, err)
    if con is not None:
        con.close()
    return out


def _cache_failed(con, err: Exception) -> None:
    global _cache_warned
    if con is not None:
        con.close()
    if not _cache_warned:

        warnings.warn(f"{paths.cache_dir() / HASH_CACHE_NAME}: hash cache unusable "
                      f"({err}); hashing every file", stacklevel=3)
        _cache_warned = True
    return None


def sha256_cached(path: str | os.PathLike) -> str:
    """Hex SHA-256 of one file through the on-disk hash cache (see :func:`sha256_files`)."""
    return sha256_files([path])[0]


# Fault injection for the interruption tests: with this variable set to N, the process kills
# itself (SIGKILL) in its N-th atomic write, after the data is on disk and before the rename.
KILL_IN_WRITE_ENV = "PATCHFORENSICS_TEST_KILL_IN_WRITE"
_writes = 0


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one (a
    temporary ``.<name>.tmp-*`` file renamed over it; a kill before the rename leaves only that
    hidden file, which nothing reads)."""
    global _writes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.environ.get(KILL_IN_WRITE_ENV):
            _writes += 1
            if _writes == int(os.environ[KILL_IN_WRITE_ENV]):
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
