"""The Carvana-family U-Net: one general builder, the four Carvana presets, and a name registry.

Every model here comes from ``unet``. The Carvana presets (petrosgk/Kaggle-Carvana-Image-Masking-
Challenge, ``model/u_net.py``) differ only in their first width and depth: each doubles from
there to 512 filters, and the centre has 1024.

Choosing a model by name (``build_model``, ``MODELS``):

- ``unet128``, ``unet256``, ``unet512``, ``unet1024`` are the presets at their own size. Their
  architecture is tied to that size, so asking for any other input size is a ValueError.
- ``small`` (base 16, depth 4) and ``tiny`` (base 8, depth 3) are light models for CPU runs.
  They take any input size that is a multiple of 2**depth (16 and 8). The default is 256.

Every model built by name or by a preset comes back compiled the seed's way (``compile_model``).
``unet`` itself returns an uncompiled model.
"""

from collections.abc import Callable
from functools import partial

import keras
from keras import layers

from segtrain.losses import compile_model

DEFAULT_SIZE = 256


def _conv_block(x, filters: int, convs: int):
    """``convs`` times: 3x3 convolution (same padding), batch norm, ReLU."""
    for _ in range(convs):
        x = layers.Conv2D(filters, (3, 3), padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return x


def unet(
    input_size: int = 256,
    base_filters: int = 64,
    depth: int = 4,
    num_classes: int = 1,
    centre_filters: int | None = None,
    channels: int = 3,
) -> keras.Model:
    """Build an uncompiled U-Net for square ``input_size`` inputs with ``channels`` channels.

    Encoder level i has base_filters * 2**i filters: two conv blocks, then a 2x2 max-pool. The
    centre has two conv blocks of ``centre_filters`` (default base_filters * 2**depth). Each
    decoder level upsamples 2x, concatenates the matching encoder output (the skip), and applies
    three conv blocks with that level's filters. The head is a 1x1 convolution with a sigmoid,
    giving one probability map per class.
    """
    divisor = 2**depth
    if input_size % divisor:
        raise ValueError(
            f"input size {input_size} is not divisible by 2**depth = {divisor}; "
            f"pick a multiple of {divisor}"
        )
    if centre_filters is None:
        centre_filters = base_filters * divisor

    inputs = keras.Input(shape=(input_size, input_size, channels))
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, convs=2)
        skips.append(x)
        x = layers.MaxPooling2D((2, 2))(x)

    x = _conv_block(x, centre_filters, convs=2)

    for level in reversed(range(depth)):
        x = layers.UpSampling2D((2, 2))(x)
        x = layers.Concatenate()([skips[level], x])
        x = _conv_block(x, base_filters * 2**level, convs=3)

    outputs = layers.Conv2D(num_classes, (1, 1), activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="unet")


def _carvana(input_shape: tuple[int, int, int], num_classes: int, base_filters: int, depth: int):
    """A compiled Carvana preset: ``unet`` with the preset's width and depth."""
    height, width, channels = input_shape
    if height != width:
        raise ValueError(f"the Carvana presets take square inputs, got {height}x{width}")
    model = unet(height, base_filters, depth, num_classes, channels=channels)
    return compile_model(model)


def get_unet_128(input_shape=(128, 128, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 128 U-Net: 4 levels of 64..512 filters, centre 1024. Compiled."""
    return _carvana(input_shape, num_classes, base_filters=64, depth=4)


def get_unet_256(input_shape=(256, 256, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 256 U-Net: 5 levels of 32..512 filters, centre 1024. Compiled."""
    return _carvana(input_shape, num_classes, base_filters=32, depth=5)


def get_unet_512(input_shape=(512, 512, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 512 U-Net: 6 levels of 16..512 filters, centre 1024. Compiled."""
    return _carvana(input_shape, num_classes, base_filters=16, depth=6)


def get_unet_1024(input_shape=(1024, 1024, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 1024 U-Net: 7 levels of 8..512 filters, centre 1024. Compiled."""
    return _carvana(input_shape, num_classes, base_filters=8, depth=7)


def _preset(preset: Callable[[], keras.Model], size: int, input_size: int | None):
    """Build a preset, refusing any input size but its own."""
    if input_size not in (None, size):
        raise ValueError(
            f"unet{size} takes input size {size} only, got {input_size}; "
            "use 'small' or 'tiny' for other sizes"
        )
    return preset()


def _light(base_filters: int, depth: int, input_size: int | None):
    """Build a compiled light U-Net at ``input_size`` (default DEFAULT_SIZE)."""
    size = DEFAULT_SIZE if input_size is None else input_size
    return compile_model(unet(size, base_filters, depth))


# Model names, as the CLI spells them, mapped to ``builder(input_size | None) -> compiled model``.
# A size of None means the model's default: its own size for a preset, DEFAULT_SIZE otherwise.
MODELS: dict[str, Callable[[int | None], keras.Model]] = {
    "unet128": partial(_preset, get_unet_128, 128),
    "unet256": partial(_preset, get_unet_256, 256),
    "unet512": partial(_preset, get_unet_512, 512),
    "unet1024": partial(_preset, get_unet_1024, 1024),
    "small": partial(_light, 16, 4),
    "tiny": partial(_light, 8, 3),
}


def build_model(name: str, input_size: int | None = None) -> keras.Model:
    """Build the compiled model called ``name`` (a key of MODELS) for ``input_size`` inputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](input_size)
