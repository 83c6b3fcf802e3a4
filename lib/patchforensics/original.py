"""Checkpoints of the original authors' code (chail/patch-forensics) as patchforensics classifiers.

The original saves ``<epoch>_net_D.pth`` files holding ``{"state_dict": ..., "optimizer": ...,
"epoch": ...}`` (some copies hold the weights under ``net_D``, or are a bare state dict; a
``DataParallel`` model adds ``module.``). Its patch models (``customnet.CustomXceptionNet`` /
``CustomResNet`` cut with ``modify_sequence``) name their stages as ours do, without our
``features.`` prefix, and end in a 1x1 conv ``convout``; its full-image baselines end in a linear
``fc`` (2 x C), our 1x1 head after global pooling. The architecture and the cut are read from
the keys. A state dict does not say its image size: the original trained on 128 px faces
upsampled to 299 px (Xception) or 224 px (ResNet), which :func:`read` assumes unless told.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .models import DEPTHS, ModelConfig, PatchClassifier

ORIGINAL_INPUT = 128  # px: the original's prepared faces
ORIGINAL_LOAD = {"xception": 299, "resnet18": 224}  # its network input (fineSize) per backbone
_STAGE = re.compile(r"^(block|layer)(\d+)\.")


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


def to_ours(state: dict[str, torch.Tensor], cfg: ModelConfig,
            path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """An authors' state dict renamed to :class:`PatchClassifier`'s keys (checked: every
    weight present with its shape; ``ValueError`` naming ``path`` otherwise)."""
    own = PatchClassifier(cfg).state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head = key.split(".", 1)
        if head[0] in ("convout", "fc", "last_linear"):
            target = f"head.{head[1]}"
            if head[0] != "convout" and head[1] == "weight":
                value = value[:, :, None, None]  # linear 2 x C == 1x1 conv after pooling
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


def to_original(model: PatchClassifier) -> dict[str, torch.Tensor]:
    """Our classifier's weights in the authors' key layout (the inverse of :func:`to_ours`),
    e.g. to hand a model to the original code's ``--which_epoch`` loading."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("features."):
            out[key.removeprefix("features.")] = value
        elif model.config.depth == "full":
            out[f"fc.{key.removeprefix('head.')}"] = value.flatten(1) if value.ndim == 4 else value
        else:
            out[f"convout.{key.removeprefix('head.')}"] = value
    return out


def read(raw: Any, path: str | os.PathLike, *, input_size: int | None = None,
         load_size: int | None = None) -> tuple[PatchClassifier, int, str] | None:
    """``(model in eval mode on the CPU, input size in px, what was assumed)`` of an authors'
    checkpoint already loaded as ``raw``, or None when it is not in their layout."""
    state = original_state(raw)
    if state is None:
        return None
    cfg = infer_config(state, path, load_size)
    model = PatchClassifier(cfg)
    model.load_state_dict(to_ours(state, cfg, path))
    size = ORIGINAL_INPUT if input_size is None else int(input_size)
    said = (f"{Path(path).name}: the original authors' layout, read as {cfg.name} (from its "
            f"keys); inputs {size} px" + (" (the original's faces)" if input_size is None else "")
            + (f", upsampled to {cfg.load_size} px" if cfg.load_size else "")
            + (" (the original's)" if load_size is None else "")
            + "; give input_size/load_size if it was trained otherwise")
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
