"""patchforensics: a reproducible companion to *What makes fake images detectable?
Understanding properties that generalize* (Chai, Bau, Lim, Isola, ECCV 2020).

The library backs the numbered notebooks in ``notebooks/``. The Python API is one call,
:func:`load` (``api.Detector``: ``score``, ``patch_map``, ``heatmap`` of single images); the
command line is ``patchforensics`` or ``python -m patchforensics``. The modules, layer by layer
in data-flow order and without import cycles, are mapped in ``lib/patchforensics/README.md``:
``paths``/``config``/``provenance`` → ``images``/``preprocess``/``data``/``original`` →
``models``/``receptive_field``/``runs`` → ``embedded``/``generators``/``segment``/``audit``/
``world`` → ``train``/``protocol`` → ``viz`` → ``evaluate``/``study``/``probe``/``parts``/``api``
→ ``finetune``/``exaggerate`` → ``notebooks``/``report``/``widgets``/``cli``.
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
