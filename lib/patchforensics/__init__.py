"""patchforensics: a reproducible companion to *What makes fake images detectable?
Understanding properties that generalize* (Chai, Bau, Lim, Isola, ECCV 2020).

The library backs the numbered notebooks in ``notebooks/``. The Python API is one call,
:func:`load` (``api.Detector``: ``score``, ``patch_map``, ``heatmap`` of single images); the
command line is ``patchforensics`` or ``python -m patchforensics``. Modules, flat and small:
``paths`` (where things live), ``config`` (dataclass configs), ``provenance`` (what every run
records), ``images`` (validated reading, atomic writing), ``preprocess`` (the parity pipeline),
``audit`` (the parity audit), ``embedded`` and ``world`` (the embedded default world),
``generators``, ``data`` (folder datasets), ``models`` and ``receptive_field``, ``train``,
``protocol`` (the paper's protocol as data), ``evaluate``, ``probe``, ``segment`` and ``parts``,
``finetune``, ``exaggerate``, ``viz`` and ``widgets`` (figures and explorers), ``notebooks``
(the headless runner), ``api`` and ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load"]

if TYPE_CHECKING:
    from .api import Detector


def load(run_or_checkpoint: Any, **kwargs: Any) -> Detector:
    """A detector from a run folder or checkpoint: ``patchforensics.api.load`` (imported on
    first use, so ``import patchforensics`` stays light)."""
    from .api import load as _load

    return _load(run_or_checkpoint, **kwargs)
