"""Dataclass configs: every component owns its defaults, and a run saves the config it used.

Only plain values (numbers, strings, tuples) so a config round-trips through JSON and can be
fingerprinted: ``fingerprint(cfg)`` is what lets a rerun recognise finished work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class WorldConfig:
    """The embedded default world (DESIGN.md): which reals, at what size, split how."""

    size: int = 64  # side in px of every prepared image (smoke: 32)
    seed: int = 0  # split seed; the same seed always gives the same files in each split
    smoke: bool = False  # a tiny world for tests/CI: few images, 32 px, few training steps
    celeba_limit: int | None = None  # use only the first N CelebA crops (None: all 999)
    olivetti_subjects: int | None = None  # use only the first N of 40 Olivetti subjects
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test fractions

    @classmethod
    def smoke_default(cls, **overrides: Any) -> WorldConfig:
        base = dict(size=32, smoke=True, celeba_limit=200, olivetti_subjects=10)
        base.update(overrides)
        return cls(**base)

    @property
    def name(self) -> str:
        """Folder name under ``paths.data_dir()``, e.g. ``default64`` or ``smoke32``."""
        return f"{'smoke' if self.smoke else 'default'}{self.size}"

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be at least 8 px, got {self.size}")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or min(self.split) <= 0:
            raise ValueError(f"split must be three positive fractions summing to 1: {self.split}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config, ignoring unknown keys and restoring tuples."""
    names = {f.name: f for f in fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**kwargs)


def fingerprint(data: Any) -> str:
    """A short stable hash of a config (dataclass or JSON-able value)."""
    if hasattr(data, "__dataclass_fields__"):
        data = to_dict(data)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def world_config(*, smoke: bool = False, seed: int = 0, size: int = 0) -> WorldConfig:
    """The default or smoke world config; ``size=0`` keeps that world's default size."""
    extra = {"size": size} if size else {}
    return WorldConfig.smoke_default(seed=seed, **extra) if smoke else WorldConfig(seed=seed,
                                                                                  **extra)
