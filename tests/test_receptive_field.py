"""Receptive fields, measured by gradients: the analytic numbers of the paper and of the
architectures, border clipping, and a brute-force check on a model with random weights that a
cell changes only when pixels inside its reported field change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchforensics.models import ModelConfig, build_model
from patchforensics.receptive_field import extract_patch, receptive_field

pytestmark = pytest.mark.usefixtures("one_thread")


# Analytic sizes: Xception block1..3 as the paper states (19, 43, 91 px); block4/5 add three
# 3x3 separable convs at stride 16 each; ResNet-18 layer1 = 7 + 2*2 (maxpool) + 4 convs * 2*4.
ANALYTIC = {
    ("xception", "block1"): (19, 4), ("xception", "block2"): (43, 8),
    ("xception", "block3"): (91, 16), ("xception", "block4"): (187, 16),
    ("xception", "block5"): (283, 16),
    ("resnet18", "layer1"): (43, 4), ("resnet18", "layer2"): (99, 8),
    ("resnet18", "layer3"): (211, 16), ("resnet18", "layer4"): (435, 32),
}


@pytest.mark.parametrize(("arch", "depth"), list(ANALYTIC), ids=lambda v: str(v))
def test_size_and_stride_match_the_analytic_numbers(arch, depth):
    rf = receptive_field(ModelConfig(arch=arch, depth=depth), 64)
    assert (rf.size, rf.stride) == ANALYTIC[(arch, depth)]
    assert rf.scale == 1.0


def test_every_cell_has_a_field_and_borders_are_clipped():
    cfg = ModelConfig(arch="xception", depth="block1")
    rf = receptive_field(cfg, 64)
    with torch.inference_mode():
        h, w = build_model(cfg).eval()(torch.zeros(1, 3, 64, 64)).shape[2:]
    assert rf.output_size == (h, w) == (len(rf.rows), len(rf.cols)) == (15, 15)
    # Zero padding: the first cells see less than 19 px, interior cells exactly 19.
    assert rf.rows[0] == (0, 13) and rf.rows[1] == (0, 17)
    assert rf.rows[2] == (2, 21) and rf.rows[3][0] - rf.rows[2][0] == rf.stride
    assert {b - a for a, b in rf.rows[2:-2]} == {19}
    # The unpadded strided stem never reads the last row of an even-sized input.
    assert max(b for _, b in rf.rows) == 63
    assert rf.slices(2, 3) == (slice(2, 21), slice(6, 25))
    assert rf.boxes().shape == (15, 15, 4) and tuple(rf.boxes()[2, 3]) == rf.box(2, 3)


def test_rectangular_inputs_get_rows_and_columns_separately():
    rf = receptive_field(ModelConfig(arch="resnet18", depth="layer1"), (48, 80))
    assert rf.output_size == (12, 20) and rf.input_size == (48, 80)
    assert rf.rows[-1][1] == 48 and rf.cols[-1][1] == 80


def test_global_models_see_the_whole_image():
    rf = receptive_field(ModelConfig(arch="resnet18", depth="full"), 40)
    assert rf.output_size == (1, 1) and rf.rows == ((0, 40),) and rf.cols == ((0, 40),)


def test_results_are_cached_per_architecture():
    a = receptive_field(build_model(arch="xception", depth="block2", seed=1), 64)
    b = receptive_field(ModelConfig(arch="xception", depth="block2", init_gain=1.0), 64)
    assert a is b


@pytest.mark.parametrize(("arch", "depth", "load_size"),
                         [("xception", "block1", 0), ("resnet18", "layer1", 0),
                          ("xception", "block2", 56)])
def test_only_pixels_inside_the_field_change_a_cell(arch, depth, load_size):
    """Brute force on random weights and random BatchNorm statistics, in float64: changing
    every pixel outside cell (i, j)'s field leaves the cell exactly unchanged; changing the
    field's outermost rows and columns changes it."""
    size = 40
    cfg = ModelConfig(arch=arch, depth=depth, load_size=load_size)
    rf = receptive_field(cfg, size)
    model = build_model(cfg, seed=0).double().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 1 / m.weight[0].numel() ** 0.5, generator=gen)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=gen)
    x = torch.rand(1, 3, size, size, generator=gen, dtype=torch.float64) * 2 - 1
    with torch.inference_mode():
        base = model(x)
    h, w = rf.output_size
    for i, j in ((0, 0), (h // 2, w // 2), (h - 1, w - 1)):
        inside = torch.from_numpy(rf.mask(i, j))
        noise = torch.rand(1, 3, size, size, generator=gen, dtype=torch.float64) * 2 - 1
        with torch.inference_mode():
            outside = model(torch.where(inside, x, noise))
        assert torch.equal(outside[0, :, i, j], base[0, :, i, j]), (i, j)
        r0, c0, r1, c1 = rf.box(i, j)
        edge = torch.zeros(size, size, dtype=torch.bool)
        edge[[r0, r1 - 1], c0:c1] = True
        edge[r0:r1, [c0, c1 - 1]] = True
        with torch.inference_mode():
            changed = model(torch.where(edge, noise, x))
        assert not torch.equal(changed[0, :, i, j], base[0, :, i, j]), (i, j)


def test_fields_of_an_upsampling_model_are_in_input_pixels():
    rf = receptive_field(ModelConfig(arch="xception", depth="block2", load_size=64), 32)
    assert (rf.size, rf.stride, rf.scale) == (43, 8, 0.5)
    assert rf.output_size == (8, 8)
    assert all(0 <= a < b <= 32 for a, b in rf.rows)


def test_extract_patch_pads_clipped_fields_to_the_full_size():
    rf = receptive_field(ModelConfig(arch="xception", depth="block1"), 64)
    image = np.arange(64 * 64 * 3, dtype=np.int64).reshape(64, 64, 3)
    corner = extract_patch(image, rf, 0, 0, pad_value=-1)
    assert corner.shape == (19, 19, 3)
    # The field is cut at the top-left, so the image content sits at the bottom-right.
    assert (corner[:6] == -1).all() and (corner[:, :6] == -1).all()
    assert np.array_equal(corner[6:, 6:], image[:13, :13])
    inner = extract_patch(image, rf, 2, 3)
    assert np.array_equal(inner, image[2:21, 6:25])
    with pytest.raises(ValueError, match="measured for"):
        extract_patch(image[:32], rf, 0, 0)


def test_packaged_fields_cover_the_profiles_and_match_a_fresh_measurement():
    from patchforensics import protocol
    from patchforensics.receptive_field import field_from_dict, measure_field, packaged_fields

    table = packaged_fields()
    for name in ("default", "quick", "full", "smoke"):
        grid = protocol.profile(name, smoke=name == "smoke")
        size = 32 if name == "smoke" else 64
        for arch, depth in grid.models:
            load = grid.full_load_size if depth == "full" else grid.load_size
            assert f"{arch}_{depth}_load{load}_{size}x{size}" in table, (name, depth)
    # Re-measured (the cheap ones: a few seconds each); the rest share the code path.
    for key in ("xception_block3_load192_64x64", "xception_block2_load64_32x32"):
        arch, depth, load, hw = key.split("_")
        cfg = ModelConfig(arch=arch, depth=depth, load_size=int(load[4:]), init_gain=0.0)
        h, w = map(int, hw.split("x"))
        assert field_from_dict(table[key]) == measure_field(cfg, h, w), key
