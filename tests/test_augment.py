"""Augmentations keep image and mask aligned and are reproducible; processing matches the seed."""

import cv2
import numpy as np
import pytest

from segtrain.augment import (
    random_horizontal_flip,
    random_hue_saturation_value,
    random_shift_scale_rotate,
)
from segtrain.processing import make_processor, prepare_image
from segtrain.tasks import fix_mask, to_gray

DARK, BRIGHT = 20, 230
MIDDLE = (DARK + BRIGHT) / 2


def scene(height: int = 120, width: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """An RGB float32 image with a bright off-centre disc and bar on a dark background, and the
    mask derived from it (255 where the image is bright). Asymmetric, so any flip or turn shows."""
    image = np.full((height, width, 3), DARK, np.float32)
    colour = (BRIGHT, 200, 180)
    cv2.circle(image, (width // 3, height // 3), height // 5, colour, -1)
    cv2.rectangle(
        image, (width * 5 // 8, height * 3 // 5), (width * 7 // 8, height * 3 // 4), colour, -1
    )
    mask = np.where(image[..., 0] > MIDDLE, 255, 0).astype(np.float32)
    return image, mask


def agreement(image: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of pixels where the mask agrees with the mask re-derived from the image."""
    from_image = image.max(axis=2) > MIDDLE  # the V of HSV: hue shifts leave it alone
    return float(np.mean(from_image == (mask.reshape(from_image.shape) > 255 / 2)))


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mask_channel", [False, True])
def test_shift_scale_rotate_moves_mask_with_image(seed, dtype, mask_channel):
    image, mask = scene()
    image, mask = image.astype(dtype), mask.astype(dtype)
    if mask_channel:
        mask = mask[..., np.newaxis]
    out_image, out_mask = random_shift_scale_rotate(image, mask, u=1.0, rng=rng(seed))
    assert out_image.shape == image.shape and out_image.dtype == dtype
    assert out_mask.shape == mask.shape and out_mask.dtype == dtype
    assert agreement(out_image, mask) < 0.99  # the scene moved enough for the check to bite
    assert agreement(out_image, out_mask) >= 0.99


@pytest.mark.parametrize("mask_channel", [False, True])
def test_horizontal_flip_mirrors_image_and_mask(mask_channel):
    image, mask = scene()
    if mask_channel:
        mask = mask[..., np.newaxis]
    out_image, out_mask = random_horizontal_flip(image, mask, u=1.0, rng=rng(0))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])
    assert out_mask.shape == mask.shape
    assert not np.array_equal(out_mask, mask)
    assert agreement(out_image, out_mask) == 1.0


def test_probability_zero_changes_nothing():
    image, mask = scene()
    assert random_hue_saturation_value(image, u=0.0, rng=rng(0)) is image
    assert random_shift_scale_rotate(image, mask, u=0.0, rng=rng(0)) == (image, mask)
    assert random_horizontal_flip(image, mask, u=0.0, rng=rng(0)) == (image, mask)


def test_hue_shift_is_pixelwise():
    """Shifting colours commutes with moving pixels around, so it cannot move anything."""
    image = rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    moved = np.ascontiguousarray(image[::-1, ::-1])
    shifted = random_hue_saturation_value(image, (20, 40), (-30, 30), (-30, 30), u=1.0, rng=rng(2))
    shifted_moved = random_hue_saturation_value(
        moved, (20, 40), (-30, 30), (-30, 30), u=1.0, rng=rng(2)
    )
    np.testing.assert_array_equal(shifted_moved, shifted[::-1, ::-1])
    assert shifted.dtype == np.uint8 and shifted.shape == image.shape
    assert np.mean(shifted != image) > 0.5


def reference_hsv_shift(image, hue, sat, val):
    """The HSV shift written plainly (Carvana's arithmetic in float HSV), for comparison."""
    h, s, v = cv2.split(cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2HSV))
    h = (h + 2 * hue) % 360
    s, v = np.clip(s + sat / 255, 0, 1), np.clip(v + val / 255, 0, 1)
    return cv2.cvtColor(cv2.merge((h, s, v)), cv2.COLOR_HSV2RGB) * 255


@pytest.mark.parametrize(
    "limits", [((-50, 50), (0, 0), (-15, 15)), ((-400, 400), (-60, 60), (-90, 90))]
)
def test_hue_saturation_value_shift_is_the_plain_arithmetic(limits):
    """The in-place version gives the plain formula's pixels, whatever way the hue wraps."""
    image = rng(7).uniform(0, 255, (24, 24, 3)).astype(np.float32)
    for seed in range(12):
        drawn = rng(seed)
        drawn.random()  # the firing draw
        shifts = [drawn.uniform(*limit) for limit in limits]
        out = random_hue_saturation_value(image, *limits, u=1.0, rng=rng(seed))
        np.testing.assert_allclose(out, reference_hsv_shift(image, *shifts), atol=2e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_hue_shift_units_and_rgb_order(dtype):
    """60 OpenCV hue units are 120 degrees: red turns green, in RGB channel order."""
    red = np.zeros((4, 4, 3), dtype)
    red[..., 0] = 255
    out = random_hue_saturation_value(red, (60, 60), (0, 0), (0, 0), u=1.0, rng=rng(0))
    assert out.dtype == dtype
    np.testing.assert_allclose(out[0, 0], [0, 255, 0], atol=1e-3)


def test_hue_shift_keeps_disc_geometry():
    image, mask = scene()
    out = random_hue_saturation_value(image, (-50, 50), (0, 0), (-15, 15), u=1.0, rng=rng(3))
    assert not np.array_equal(out, image)
    assert agreement(out, mask) == 1.0


def test_augmentations_are_reproducible():
    image, mask = scene()

    def run(seed):
        generator = rng(seed)
        out = random_hue_saturation_value(image, u=1.0, rng=generator)
        out, out_mask = random_shift_scale_rotate(out, mask, u=1.0, rng=generator)
        return random_horizontal_flip(out, out_mask, rng=generator)

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_fix_mask_threshold_boundary():
    mask = np.array([[99, 100], [0, 255]], np.uint8)
    np.testing.assert_array_equal(fix_mask(mask), [[0, 255], [0, 255]])
    np.testing.assert_array_equal(
        fix_mask(mask.astype(np.float32)[..., None]), [[0, 255], [0, 255]]
    )
    np.testing.assert_array_equal(fix_mask(mask, threshold=50), [[255, 255], [0, 255]])


def test_to_gray_uses_rgb_order_and_drops_alpha():
    red = np.zeros((2, 2, 4), np.uint8)
    red[..., 0] = 255
    assert to_gray(red)[0, 0] == 76  # 0.299 * 255; BGR order would give 0.114 * 255 = 29
    np.testing.assert_array_equal(to_gray(red), to_gray(red[..., :3]))
    assert to_gray(red[..., :1]).shape == (2, 2)
    assert to_gray(red[..., 0]).shape == (2, 2)


def sample(kind: str, height: int = 217, width: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A loader-style sample (float32 0-255) of an odd size: RGB, RGBA or grey image and a
    white-on-black mask of the same kind."""
    image, mask = scene(height, width)
    if kind == "rgba":
        alpha = np.zeros((height, width, 1), np.float32)  # ignored: a fully transparent alpha
        return np.concatenate([image, alpha], axis=2), np.repeat(mask[..., None], 4, axis=2)
    if kind == "grey":
        return image.max(axis=2, keepdims=True), mask[..., None]
    if kind == "grey2d":
        return image.max(axis=2), mask
    return image, np.repeat(mask[..., None], 3, axis=2)


@pytest.mark.parametrize("kind", ["rgb", "rgba", "grey", "grey2d"])
@pytest.mark.parametrize("augment", [False, True])
def test_processor_output_shapes_and_values(kind, augment):
    process = make_processor(256, augment=augment, rng=rng(0))
    image, mask = process(sample(kind))
    assert image.shape == (256, 256, 3) and image.dtype == np.float32
    assert mask.shape == (256, 256, 1) and mask.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert agreement(image * 255, mask * 255) >= 0.99


def test_processor_grey_image_is_repeated_to_three_channels():
    image, _ = make_processor(augment=False)(sample("grey"))
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_processor_ignores_alpha():
    process = make_processor(augment=False)
    rgba_image, rgba_mask = process(sample("rgba"))
    rgb_image, rgb_mask = process(sample("rgb"))
    np.testing.assert_array_equal(rgba_image, rgb_image)
    np.testing.assert_array_equal(rgba_mask, rgb_mask)


def test_processor_without_augment_keeps_foreground_fraction():
    raw_image, raw_mask = sample("rgb")
    _, mask = make_processor(augment=False)((raw_image, raw_mask))
    assert mask.mean() == pytest.approx((raw_mask[..., 0] > 0).mean(), abs=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_processor_augmentation_is_aligned_and_reproducible(seed):
    raw = sample("rgb")
    first = make_processor(augment=True, rng=rng(seed))(raw)
    again = make_processor(augment=True, rng=rng(seed))(raw)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert agreement(first[0] * 255, first[1] * 255) >= 0.99


def test_processor_augments_most_samples():
    """Each of the three augmentations fires with p = 0.5, so 7 samples in 8 change."""
    raw = sample("rgb")
    plain, _ = make_processor(augment=False)(raw)
    process = make_processor(augment=True, rng=rng(0))
    changed = [not np.array_equal(process(raw)[0], plain) for _ in range(16)]
    assert sum(changed) >= 10


def test_prepare_image_is_the_unaugmented_image_path():
    raw = sample("rgba")
    expected, _ = make_processor(128, augment=False)(raw)
    np.testing.assert_array_equal(prepare_image(raw[0], 128), expected)
