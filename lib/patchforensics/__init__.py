"""patchforensics: a reproducible companion to *What makes fake images detectable?
Understanding properties that generalize* (Chai, Bau, Lim, Isola, ECCV 2020).

The library backs the numbered notebooks in ``notebooks/``; modules are flat and small:
``paths`` (where things live), ``config`` (dataclass configs), ``provenance`` (what every run
records), ``imageio`` (validated reading, atomic writing), ``preprocess`` (the parity pipeline),
``audit`` (the parity audit), ``embedded`` (the embedded default world), ``data`` (folder
datasets), ``viz`` (figures) and ``cli``.
"""

__version__ = "0.1.0"
