"""Patch classifiers: output map shapes for every arch/depth and input size, the head, the
paper's image score, the initialisation and user-supplied weights."""

from __future__ import annotations

import pytest
import torch

from patchforensics.models import (
    DEPTHS,
    ModelConfig,
    PatchClassifier,
    build_model,
    count_parameters,
    load_init,
    mean_fake_probability,
    parse_depth,
)

ALL = [(a, d) for a, ds in DEPTHS.items() for d in ds]


pytestmark = pytest.mark.usefixtures("one_thread")


def _conv(s: int, k: int, stride: int, pad: int) -> int:
    return (s + 2 * pad - k) // stride + 1


def expected_side(arch: str, depth: str, s: int) -> int:
    """Output side from the layer arithmetic of the published architectures."""
    if depth == "full":
        return 1
    if arch == "xception":
        s = _conv(_conv(s, 3, 2, 0), 3, 1, 0)  # stem: two unpadded 3x3 convs, the first strided
        for _ in range(min(int(depth[-1]), 3)):  # block1..3 end in a 3x3/2 max-pool; 4, 5 keep
            s = _conv(s, 3, 2, 1)
        return s
    s = _conv(_conv(s, 7, 2, 3), 3, 2, 1)  # conv1 7x7/2, maxpool 3x3/2
    for _ in range(int(depth[-1]) - 1):  # layer2..4 halve
        s = _conv(s, 3, 2, 1)
    return s


@pytest.mark.parametrize(("arch", "depth"), ALL, ids=[f"{a}-{d}" for a, d in ALL])
def test_output_map_shape_for_every_arch_depth_and_size(arch, depth):
    torch.manual_seed(0)
    model = build_model(arch=arch, depth=depth, seed=0).eval()
    for h, w in ((32, 32), (64, 64), (48, 80)):
        with torch.inference_mode():
            y = model(torch.rand(2, 3, h, w) * 2 - 1)
        assert y.shape == (2, 2, expected_side(arch, depth, h), expected_side(arch, depth, w))
        assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_patch_map_sizes_at_the_papers_resolution():
    # Xception block2 at the paper's 299 px load size: a 37 x 37 map of 43 px patches.
    model = build_model(arch="xception", depth="block2", seed=0).eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 299, 299)).shape == (1, 2, 37, 37)


def test_load_size_upsamples_inside_the_model():
    small = build_model(arch="resnet18", depth="layer1", load_size=64, seed=0).eval()
    plain = build_model(arch="resnet18", depth="layer1", seed=0).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        y = small(x)
        up = torch.nn.functional.interpolate(x, size=(64, 64), mode="bicubic",
                                             align_corners=False)
        assert y.shape == (1, 2, 16, 16)
        torch.testing.assert_close(y, plain(up))


def test_truncated_models_keep_only_the_layers_up_to_the_cut():
    model = build_model(arch="xception", depth="block2")
    names = list(model.features._modules)
    assert names[-1] == "block2" and "block3" not in names
    assert model.head.in_channels == 256 and model.head.kernel_size == (1, 1)
    full = build_model(arch="xception", depth="full")
    assert list(full.features._modules)[-1] == "relu4" and full.head.in_channels == 2048
    # Chollet's Xception without its 1000-way classifier has 20.8M parameters.
    assert abs(count_parameters(full) - 20_811_050) < 10
    assert build_model(arch="resnet18", depth="layer1").head.in_channels == 64


def test_parse_depth_accepts_numbers_and_names():
    assert parse_depth("xception", 3) == "block3"
    assert parse_depth("resnet18", "2") == "layer2"
    assert parse_depth("resnet18", "FULL") == "full"
    with pytest.raises(ValueError, match="layer1"):
        parse_depth("resnet18", 5)
    with pytest.raises(ValueError):
        ModelConfig(arch="vgg")


def test_bad_input_shape_is_reported():
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        build_model(arch="resnet18", depth="layer1")(torch.zeros(1, 1, 32, 32))


def test_image_score_is_mean_patch_softmax():
    logits = torch.zeros(2, 2, 2, 2)
    logits[0, 1] = torch.tensor([[10.0, -10.0], [10.0, -10.0]])  # two sure-fake, two sure-real
    logits[1, 1] = 10.0
    s = mean_fake_probability(logits)
    torch.testing.assert_close(s, torch.tensor([0.5, torch.sigmoid(torch.tensor(10.0)).item()]))


def test_seeded_init_is_reproducible_and_follows_the_original_scheme():
    a = build_model(arch="resnet18", depth="layer1", seed=3)
    b = build_model(arch="resnet18", depth="layer1", seed=3)
    c = build_model(arch="resnet18", depth="layer1", seed=4)
    wa, wb, wc = (m.features.conv1.weight.detach() for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    # xavier-normal, gain 0.02: std = 0.02 * sqrt(2 / (fan_in + fan_out)), fans 3*49, 64*49.
    std = 0.02 * (2 / (3 * 49 + 64 * 49)) ** 0.5
    assert abs(float(wa.std()) / std - 1) < 0.1
    assert float(a.features.bn1.bias.detach().abs().max()) == 0.0


def test_load_init_maps_backbone_keys_and_skips_mismatches(tmp_path):
    src = build_model(arch="resnet18", depth="full", seed=1)
    # A torchvision-style state dict: no "features." prefix, and a 1000-way fc we cannot use.
    state = {k.removeprefix("features."): v for k, v in src.state_dict().items()
             if not k.startswith("head")}
    state["fc.weight"] = torch.zeros(1000, 512)
    torch.save(state, tmp_path / "resnet18.pth")
    dst = build_model(arch="resnet18", depth="layer2", seed=2)
    report = load_init(dst, tmp_path / "resnet18.pth")
    assert torch.equal(dst.features.layer2[0].conv1.weight, src.features.layer2[0].conv1.weight)
    assert "fc.weight" in report["skipped"] and "head.weight" in report["missing"]
    assert not any(k.startswith("features.layer3") for k in report["loaded"])
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no parameter matches"):
        load_init(dst, tmp_path / "bad.pth")


def test_model_is_a_patch_classifier_with_its_config():
    model = build_model(ModelConfig(arch="xception", depth="block1"))
    assert isinstance(model, PatchClassifier)
    assert model.config.name == "xception_block1"


@pytest.mark.parametrize("arch,depth", [("xception", "block2"), ("xception", "full"),
                                        ("resnet18", "layer1")])
def test_inference_twin_folds_batchnorm_and_follows_weight_changes(arch, depth, one_thread):
    from patchforensics.models import inference_model

    torch.manual_seed(0)
    model = build_model(arch=arch, depth=depth, init_gain=1.0, seed=0)
    model.train()
    with torch.no_grad():  # give every BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    twin = inference_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in twin.modules())
    assert "_inference_twin" not in str(list(model.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=1e-4, atol=1e-4)
    assert inference_model(model) is twin  # cached while the weights stay
    with torch.no_grad():
        model.head.bias.add_(1.0)  # an in-place change, as an optimizer step makes
    assert inference_model(model) is not twin
    assert inference_model(twin) is twin  # a twin is its own twin
    assert "_inference_twin" not in inference_model(model).__dict__  # no chain of old twins
    with torch.no_grad():
        torch.testing.assert_close(inference_model(model)(x), model(x), rtol=1e-4, atol=1e-4)
