"""The data-root layout in one place: a set is ``real/<dataset>`` or ``fake/<dataset>/<name>``
(each a folder of ``train/``, ``val/`` and ``test/``), and a generator's inversions of the reals are
the set ``fake/<dataset>/<generator>_inverted``. Set keys are these relative paths (the world's
manifest lists them); ``root / key`` is the folder."""

from __future__ import annotations

INVERTED = "_inverted"  # suffix of an inversion set's name: fake/celeba/dcgan_inverted


def real_key(dataset: str) -> str:
    """``real/<dataset>``: the key (and relative folder) of a real set."""
    return f"real/{dataset}"


def fake_key(dataset: str, name: str) -> str:
    """``fake/<dataset>/<name>``: a generator's samples, its inversions or a manipulation set."""
    return f"fake/{dataset}/{name}"


def fake_prefix(dataset: str) -> str:
    """``fake/<dataset>/``: what every fake set key of ``dataset`` starts with."""
    return fake_key(dataset, "")


def set_key(dataset: str, name: str) -> str:
    """``name`` ``"real"``: the real set of ``dataset``; anything else: its fake set ``name``."""
    return real_key(dataset) if name == "real" else fake_key(dataset, name)


def inverted(generator: str) -> str:
    """The name of ``generator``'s inversion set (``dcgan`` -> ``dcgan_inverted``)."""
    return f"{generator}{INVERTED}"


def split_key(key: str) -> tuple[str, str, str]:
    """``(kind, dataset, name)`` of a set key: ``("real", dataset, "")`` or ``("fake", dataset,
    name)``; ``ValueError`` for anything else."""
    parts = key.split("/")
    if parts[0] == "real" and len(parts) == 2:
        return "real", parts[1], ""
    if parts[0] == "fake" and len(parts) == 3:
        return "fake", parts[1], parts[2]
    raise ValueError(f"{key!r} is not a set key (real/<dataset> or fake/<dataset>/<name>)")
