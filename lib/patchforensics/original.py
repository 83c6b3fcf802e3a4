"""Checkpoints of the original authors' code (chail/patch-forensics) as patchforensics classifiers.

The original saves ``<epoch>_net_D.pth`` files holding ``{"state_dict": ..., "optimizer": ...,
"epoch": ...}`` (some copies hold the weights under ``net_D``, or are a bare state dict; a
``DataParallel`` model adds ``module.``). Its patch models (``customnet.CustomXceptionNet`` /
``CustomResNet`` cut with ``modify_sequence``) name their stages as ours do, without our
``features.`` prefix, and end in a 1x1 conv ``convout``; its full-image baselines end in a linear
``fc`` (2 x C), our 1x1 head after global pooling. The architecture and the cut are read from
the keys.

Three things a state dict does not say come from the options file the original writes beside
every checkpoint (``opt.yml``, or ``opt.txt`` in older runs), else from the original's defaults:

- **the class order** (``fake_class_id``, default 0: output channel 0 is *fake* in the
  original, channel 1 in ours, so the head's two rows are swapped on the way in and out);
- **the network input** (``loadSize``, default 299 for Xception / 224 for ResNet; ``fineSize``,
  the centre crop of its full-image models) and its resampling: the original resizes the 8-bit
  PIL image with LANCZOS (``data/transforms.py``), so the model we build does the same
  (``ModelConfig.resize_filter="lanczos_uint8"``) instead of our bicubic on float tensors;
- the size of the images it saw (not recorded: its faces were 128 px).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .data import FAKE
from .models import DEPTHS, ModelConfig, PatchClassifier

ORIGINAL_INPUT = 128  # px: the original's prepared faces
ORIGINAL_LOAD = {"xception": 299, "resnet18": 224}  # its network input (fineSize) per backbone
ORIGINAL_FAKE_CLASS = 0  # ``--fake_class_id``'s default in the original's base_options.py
OPTION_FILES = ("opt.yml", "opt.txt")  # what the original writes beside its checkpoints
_STAGE = re.compile(r"^(block|layer)(\d+)\.")
_OPTION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*(?:\[default:.*\])?\s*$")


@dataclass(frozen=True)
class Options:
    """What an original checkpoint's options file says (None where it says nothing)."""

    source: str  # the options file's name, or "" when there is none
    fake_class_id: int | None = None
    load_size: int | None = None
    fine_size: int | None = None
    model_netd: str | None = None  # ``which_model_netD``, e.g. "xception_block2"


def read_options(checkpoint: str | os.PathLike) -> Options:
    """The options file beside ``checkpoint`` (``opt.yml`` first, then ``opt.txt``), read as
    ``key: value`` lines (both formats are that; ``opt.txt`` adds ``[default: ...]`` notes).
    ``Options("")`` when there is none. ``ValueError`` naming the file for a value that is not
    what the original writes there."""
    for name in OPTION_FILES:
        path = Path(checkpoint).parent / name
        if path.is_file():
            break
    else:
        return Options("")
    found: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _OPTION.match(line)
        if m:
            found[m.group(1)] = m.group(2).strip().strip("'\"")

    def integer(key: str) -> int | None:
        if key not in found:
            return None
        try:
            return int(found[key])
        except ValueError:
            raise ValueError(f"{path}: {key} is {found[key]!r}, not an integer") from None

    fake = integer("fake_class_id")
    if fake not in (None, 0, 1):
        raise ValueError(f"{path}: fake_class_id is {fake}; a two-class model has 0 or 1")
    return Options(name, fake, integer("loadSize"), integer("fineSize"),
                   found.get("which_model_netD"))


def original_state(raw: Any) -> dict[str, torch.Tensor] | None:
    """The state dict of an authors'-layout checkpoint (keys without ``module.``), or None
    when ``raw`` (a loaded file) is not one: a patchforensics checkpoint, or no state dict."""
    if not isinstance(raw, dict) or "model_config" in raw:
        return None
    for key in ("state_dict", "net_D"):
        if isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    if not raw or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                          for k, v in raw.items()):
        return None
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    if "conv1.weight" not in state:
        return None
    return state


def infer_config(state: dict[str, torch.Tensor], path: str | os.PathLike,
                 load_size: int | None = None) -> ModelConfig:
    """Backbone and cut of an authors' state dict, from its keys; ``load_size`` default: the
    original's for the backbone. Raises ``ValueError`` naming ``path`` for a layout
    patchforensics does not build (another ResNet, a cut after a ReLU, an unknown head)."""
    stages = {(m.group(1), int(m.group(2))) for k in state if (m := _STAGE.match(k))}
    kinds = {kind for kind, _ in stages}
    if len(kinds) != 1:
        raise ValueError(f"{path}: an authors'-layout state dict without Xception blocks or "
                         "ResNet layers (a cut inside the stem?); patchforensics builds cuts "
                         "after block1..5 / layer1..4 and full models only")
    arch = "xception" if kinds == {"block"} else "resnet18"
    last = max(n for _, n in stages)
    if arch == "resnet18" and any(k.startswith(("layer1.2.", "layer1.0.conv3")) for k in state):
        raise ValueError(f"{path}: a ResNet deeper than ResNet-18; only resnet18 is supported")
    if "convout.weight" in state:
        depth = f"{'block' if arch == 'xception' else 'layer'}{last}"
    elif "fc.weight" in state or "last_linear.weight" in state:
        depth = "full"
    else:
        raise ValueError(f"{path}: an authors'-layout state dict with neither a patch head "
                         "(convout) nor a full-image one (fc)")
    if depth not in DEPTHS[arch]:
        raise ValueError(f"{path}: a {arch} cut after {depth}; patchforensics builds "
                         f"{', '.join(DEPTHS[arch])}")
    return ModelConfig(arch=arch, depth=depth,
                       load_size=ORIGINAL_LOAD[arch] if load_size is None else load_size)


def _class_rows(value: torch.Tensor, fake_class_id: int) -> torch.Tensor:
    """A head weight or bias with its two output rows in the other convention's order:
    swapped when the fake class is row 0 (ours is row 1, ``data.FAKE``), else unchanged."""
    if fake_class_id not in (0, 1):
        raise ValueError(f"fake_class_id must be 0 or 1, got {fake_class_id}")
    if value.shape[0] != 2:
        raise ValueError(f"a two-class head has 2 rows, this one {value.shape[0]}")
    return value.flip(0) if fake_class_id != FAKE else value


def to_ours(state: dict[str, torch.Tensor], cfg: ModelConfig, path: str | os.PathLike,
            fake_class_id: int = ORIGINAL_FAKE_CLASS) -> dict[str, torch.Tensor]:
    """An authors' state dict renamed to :class:`PatchClassifier`'s keys, its head's rows in
    our class order (``fake_class_id``: the original's output row of "fake"; checked: every
    weight present with its shape; ``ValueError`` naming ``path`` otherwise)."""
    own = PatchClassifier(cfg).state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head = key.split(".", 1)
        if head[0] in ("convout", "fc", "last_linear"):
            target = f"head.{head[1]}"
            if head[0] != "convout" and head[1] == "weight":
                value = value[:, :, None, None]  # linear 2 x C == 1x1 conv after pooling
            value = _class_rows(value, fake_class_id)
        else:
            target = f"features.{key}"
        if target not in own:
            continue  # a full model's layers past our cut: none for the layouts we accept
        if own[target].shape != value.shape:
            raise ValueError(f"{path}: {key} is {tuple(value.shape)}, the {cfg.name} model "
                             f"has {tuple(own[target].shape)} there")
        out[target] = value
    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's step counters: unused at inference.
    missing = [k for k in own if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: not a complete {cfg.name} ({len(missing)} weights missing, "
                         f"e.g. {missing[0]})")
    return {k: out.get(k, own[k]) for k in own}


def to_original(model: PatchClassifier,
                fake_class_id: int = ORIGINAL_FAKE_CLASS) -> dict[str, torch.Tensor]:
    """Our classifier's weights in the authors' key layout and class order (the inverse of
    :func:`to_ours`), e.g. to hand a model to the original code's ``--which_epoch`` loading;
    ``fake_class_id`` must be the ``--fake_class_id`` that code runs with (its default 0)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("features."):
            out[key.removeprefix("features.")] = value
            continue
        value = _class_rows(value, fake_class_id)
        if model.config.depth == "full":
            out[f"fc.{key.removeprefix('head.')}"] = value.flatten(1) if value.ndim == 4 else value
        else:
            out[f"convout.{key.removeprefix('head.')}"] = value
    return out


def read(raw: Any, path: str | os.PathLike, *, input_size: int | None = None,
         load_size: int | None = None,
         fake_class_id: int | None = None) -> tuple[PatchClassifier, int, str] | None:
    """``(model in eval mode on the CPU, input size in px, one line saying what was read and
    what assumed)`` of an authors' checkpoint already loaded as ``raw``, or None when it is not
    in their layout. Each of ``input_size``, ``load_size`` and ``fake_class_id`` comes from the
    argument when given, else from the options file beside ``path`` (:func:`read_options`),
    else from the original's defaults. The model resizes its inputs as the original's test
    transform does (PIL LANCZOS on 8-bit images to ``loadSize``; its full-image models then
    take the centre ``fineSize``)."""
    state = original_state(raw)
    if state is None:
        return None
    opts = read_options(path)
    cfg = infer_config(state, path, load_size if load_size is not None else opts.load_size)
    # e.g. "xception_block2", "resnet18_layer1" (a patch model's name is ours; its full
    # models are named by backbone alone)
    if opts.model_netd and cfg.depth != "full" \
            and "_".join(opts.model_netd.split("_")[:2]) != cfg.name:
        raise ValueError(f"{Path(path).parent / opts.source}: which_model_netD is "
                         f"{opts.model_netd}, but {Path(path).name}'s keys are a {cfg.name}")
    crop = opts.fine_size if cfg.depth == "full" and opts.fine_size else 0
    cfg = replace(cfg, resize_filter="lanczos_uint8",
                  centre_crop=crop if crop and crop < cfg.load_size else 0)
    fake = next(v for v in (fake_class_id, opts.fake_class_id, ORIGINAL_FAKE_CLASS)
                if v is not None)
    model = PatchClassifier(cfg)
    model.load_state_dict(to_ours(state, cfg, path, fake))

    def origin(given: object, in_file: object) -> str:
        if given is not None:
            return "given"
        return f"from {opts.source}" if in_file is not None else "the original's default"

    size = ORIGINAL_INPUT if input_size is None else int(input_size)
    said = (f"{Path(path).name}: the original authors' layout, read as {cfg.name} (from its "
            f"keys); output {fake} = fake (fake_class_id {fake}, "
            f"{origin(fake_class_id, opts.fake_class_id)}"
            + ("" if opts.source or fake_class_id is not None else
               f": no {' or '.join(OPTION_FILES)} beside it, give --fake-class-id if it was "
               "trained otherwise")
            + f"); inputs {size} px ({'given' if input_size is not None else 'the original faces'}"
            f"), LANCZOS to {cfg.load_size} px ({origin(load_size, opts.load_size)})"
            + (f", centre {cfg.centre_crop} px" if cfg.centre_crop else ""))
    return model.eval(), size, said


def sniff(path: str | os.PathLike) -> str:
    """A guess at what a file that is not a checkpoint holds, for the error message:
    ``"a CSV file?"``, ``"a JSON file?"``, ``"an image?"``, ... (empty when unknown)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "an empty file"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")):
        return "an image?"
    if head.startswith(b"PK"):
        return "a zip archive that is no torch file?"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "a JSON file?"
    if stripped.startswith(("#", "%", "---")) or ":" in stripped.split("\n", 1)[0]:
        return "a text or YAML file?"
    if "," in stripped.split("\n", 1)[0]:
        return "a CSV file?"
    return "a text file?"
