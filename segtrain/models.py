"""The Carvana-family U-Net: one general builder, the four Carvana presets, and build by name.

Every model here comes from ``unet``; the names, widths and depths are in
``segtrain.architectures``. Built by name (``build_model``) or by a preset, a model comes back
compiled as the original Carvana/chairs workflow compiled it (``compile_model``); ``unet`` itself
returns an uncompiled model.

    model = build_model("small", 128)             # compiled, float32
    model = build_model("unet256", precision="mixed_bfloat16")
"""

from segtrain.architectures import ARCHITECTURES, architecture, check_divisible
from segtrain.encoders import encoder_unet
from segtrain.losses import compile_model
from segtrain.runtime import import_keras
from segtrain.tasks import BinaryMasks, MaskTask

keras = import_keras()
layers = keras.layers

MODELS = ARCHITECTURES  # the model names, as the CLI spells them


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
    activation: str = "sigmoid",
) -> keras.Model:
    """Build an uncompiled U-Net for square ``input_size`` inputs with ``channels`` channels.

    Encoder level i has base_filters * 2**i filters: two conv blocks, then a 2x2 max-pool. The
    centre has two conv blocks of ``centre_filters`` (default base_filters * 2**depth). Each
    decoder level upsamples 2x, concatenates the matching encoder output (the skip), and applies
    three conv blocks with that level's filters. The head is a 1x1 convolution with
    ``num_classes`` filters and ``activation``: "sigmoid" (Carvana's: one independent
    probability map per class) or "softmax" (one class per pixel, for class maps).
    """
    check_divisible(input_size, depth)
    if centre_filters is None:
        centre_filters = base_filters * 2**depth

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

    outputs = layers.Conv2D(num_classes, (1, 1), activation=activation)(x)
    return keras.Model(inputs, outputs, name="unet")


def _carvana(name: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A compiled Carvana preset: ``unet`` with the preset's width and depth."""
    height, width, channels = input_shape
    if height != width:
        raise ValueError(f"the Carvana presets take square inputs, got {height}x{width}")
    spec = ARCHITECTURES[name]
    return compile_model(
        unet(height, spec.base_filters, spec.depth, num_classes, channels=channels)
    )


def get_unet_128(input_shape=(128, 128, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 128 U-Net: 4 levels of 64..512 filters, centre 1024. Compiled."""
    return _carvana("unet128", input_shape, num_classes)


def get_unet_256(input_shape=(256, 256, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 256 U-Net: 5 levels of 32..512 filters, centre 1024. Compiled."""
    return _carvana("unet256", input_shape, num_classes)


def get_unet_512(input_shape=(512, 512, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 512 U-Net: 6 levels of 16..512 filters, centre 1024. Compiled."""
    return _carvana("unet512", input_shape, num_classes)


def get_unet_1024(input_shape=(1024, 1024, 3), num_classes: int = 1) -> keras.Model:
    """Carvana's 1024 U-Net: 7 levels of 8..512 filters, centre 1024. Compiled."""
    return _carvana("unet1024", input_shape, num_classes)


def build_model(
    name: str,
    input_size: int | None = None,
    *,
    precision: str = "float32",
    lr: float = 1e-4,
    xla: bool = False,
    optimizer: str = "rmsprop",
    task: MaskTask | None = None,
    encoder_weights: str | None = None,
) -> keras.Model:
    """Build the model called ``name`` for ``input_size`` inputs, compiled for its ``task``.

    Args:
        name: a key of ``MODELS`` (``segtrain.architectures``).
        input_size: the square input size; None for the model's default.
        precision: the Keras dtype policy ("float32" or "mixed_bfloat16"), set globally only
            while the layers are made. The head stays float32 whatever the policy, so
            probabilities and the loss are computed in float32.
        lr, xla, optimizer: passed to the task's ``compile``.
        task: what the masks mean (``segtrain.tasks``), which sets the head's outputs and
            activation, the loss and the metric: None is ``BinaryMasks`` (one sigmoid output,
            compiled as the original Carvana/chairs workflow compiled it); ``ClassMaps`` has
            one softmax output per class.
        encoder_weights: an encoder U-Net's initial encoder weights (``segtrain.encoders``).

    Returns:
        The compiled model.

    Raises:
        ValueError: an unknown name or a size the architecture cannot take.
    """
    spec = architecture(name)
    size = spec.input_size(name, input_size)
    task = task or BinaryMasks()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        if spec.encoder:
            model = encoder_unet(spec.encoder, size, task.outputs, task.activation, encoder_weights)
        else:
            model = unet(
                size, spec.base_filters, spec.depth, task.outputs, activation=task.activation
            )
    finally:
        keras.config.set_dtype_policy(previous)
    model.layers[-1].dtype_policy = "float32"
    return task.compile(model, lr, xla, optimizer)
