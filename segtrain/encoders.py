"""Encoder U-Nets, built as segmentation-models-pytorch builds its ``Unet``.

An encoder (a classification backbone without its top) gives features at strides 2, 4, 8, 16
and 32; the decoder starts from the stride-32 features and, five times, upsamples 2x (nearest),
concatenates the encoder's features of that stride (none at stride 1), and applies two
3x3 convolution + batch norm + ReLU blocks, with smp's decoder channels (256, 128, 64, 32,
16); a 1x1 convolution with the task's activation is the head, the model's last layer.

- ``resnet18``, ``resnet34``: torchvision's ResNets (BasicBlock), written here: Keras has no
  ResNet-18/34 (keras.applications starts at ResNet-50; keras-hub would be another
  dependency). Layer names follow torchvision's (``layer2_0_conv1`` is ``layer2.0.conv1``),
  padding and batch-norm constants too, so torchvision's weights compute the same features
  once copied over (``copy_torchvision_weights``).
- ``mobilenetv2``: keras.applications' MobileNetV2, features taken where smp takes them.

The U-Net's input is an RGB image in [0, 1] (what ``segtrain.processing`` gives); a fixed
``Rescaling`` layer turns it into what the encoder was trained on: ImageNet's mean and
standard deviation for the ResNets (torchvision's), [-1, 1] for MobileNetV2.

Encoder weights (``encoder_weights``): None or "none" (random), "imagenet" (MobileNetV2 only:
fetched once with ``keras.utils.get_file`` into Keras' cache, ``$KERAS_HOME/models`` or
``~/.keras/models``), or the path of a ``.weights.h5`` file the encoder saved::

    build_encoder("resnet34", 128).save_weights("resnet34.weights.h5")
    model = encoder_unet("resnet34", 256, 1, "sigmoid", "resnet34.weights.h5")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from segtrain.architectures import check_divisible, check_encoder_weights
from segtrain.errors import SegtrainError, first_line
from segtrain.runtime import WeightsSkipped, import_keras, load_weights

keras = import_keras()
layers = keras.layers

ENCODERS = ("resnet18", "resnet34", "mobilenetv2")
DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's Unet default
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
MOBILENETV2_FEATURES = (  # smp's: the end of the stages of strides 2, 4, 8, 16, 32
    "expanded_conv_project_BN",
    "block_2_add",
    "block_5_add",
    "block_12_add",
    "out_relu",
)
MOBILENETV2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
MOBILENETV2_SIZES = (96, 128, 160, 192, 224)  # keras.applications' ImageNet weights


def _batch_norm(name: str | None = None):
    """Batch norm with PyTorch's constants (momentum 0.1, eps 1e-5), as torchvision and smp."""
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    """A bias-free convolution padded as PyTorch pads it: kernel // 2 zeros on every side."""
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=name)(x)


def _basic_block(x, filters: int, stride: int, name: str):
    """torchvision's BasicBlock: two 3x3 conv + BN, a 1x1 conv + BN shortcut on a change."""
    shortcut = x
    y = _conv(x, filters, 3, stride, f"{name}_conv1")
    y = layers.ReLU(name=f"{name}_relu1")(_batch_norm(f"{name}_bn1")(y))
    y = _batch_norm(f"{name}_bn2")(_conv(y, filters, 3, 1, f"{name}_conv2"))
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(x, filters, 1, stride, f"{name}_downsample_0")
        shortcut = _batch_norm(f"{name}_downsample_1")(shortcut)
    return layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _resnet(name: str, input_size: int) -> keras.Model:
    """A ResNet-18/34 encoder: stem (7x7/2 conv, BN, ReLU), 3x3/2 max-pool, four stages."""
    inputs = keras.Input((input_size, input_size, 3))
    x = _conv(inputs, 64, 7, 2, "conv1")
    x = layers.ReLU(name="relu")(_batch_norm("bn1")(x))
    features = [x]
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)  # after a ReLU, zeros pad as -inf would
    x = layers.MaxPooling2D(3, 2, name="maxpool")(x)
    for stage, blocks in enumerate(RESNET_BLOCKS[name], start=1):
        filters = 64 * 2 ** (stage - 1)
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, filters, stride, f"layer{stage}_{block}")
        features.append(x)
    return keras.Model(inputs, features, name="encoder")


def _mobilenetv2(input_size: int, imagenet: bool) -> keras.Model:
    """keras.applications' MobileNetV2 (width 1.0) without its top, as a feature encoder."""
    backbone = keras.applications.MobileNetV2(
        input_shape=(input_size, input_size, 3), include_top=False, weights=None
    )
    if imagenet:  # as keras.applications loads them, with a one-line error for a bad file
        path = _imagenet_weights(input_size)
        try:
            backbone.load_weights(path)
        except (ValueError, KeyError, OSError, TypeError) as exc:
            raise SegtrainError(
                f"{path} does not hold MobileNetV2's ImageNet weights ({first_line(exc)}); "
                "delete it to download it again"
            ) from exc
    features = [backbone.get_layer(name).output for name in MOBILENETV2_FEATURES]
    return keras.Model(backbone.input, features, name="encoder")


def mobilenetv2_imagenet_file(input_size: int) -> str:
    """The file keras.applications keeps MobileNetV2's ImageNet weights (no top) in.

    Keras has weights trained at 96, 128, 160, 192 and 224 px and takes the 224 ones for
    other sizes, as here.
    """
    rows = input_size if input_size in MOBILENETV2_SIZES else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _imagenet_weights(input_size: int) -> str:
    """MobileNetV2's ImageNet weights, from Keras' cache or downloaded into it: the file's path.

    Raises:
        SegtrainError: the file is not cached and cannot be downloaded (offline).
    """
    name = mobilenetv2_imagenet_file(input_size)
    cache = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
    try:
        return keras.utils.get_file(
            name, MOBILENETV2_URL + name, cache_dir=str(cache), cache_subdir="models"
        )
    except Exception as exc:  # get_file raises a bare Exception when the fetch fails
        raise SegtrainError(
            f"cannot download MobileNetV2's ImageNet weights ({first_line(exc)}); "
            f"offline, fetch {MOBILENETV2_URL + name} elsewhere and put it at "
            f"{cache / 'models' / name} (the folder is $KERAS_HOME/models, else ~/.keras/models)"
        ) from exc


RESNET_SCALING = (
    tuple(1 / std for std in IMAGENET_STD),
    tuple(-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)),
)
INPUT_SCALING = {"mobilenetv2": (2.0, -1.0)}  # (scale, offset); the ResNets: RESNET_SCALING


def build_encoder(encoder: str, input_size: int, weights: str | None = None) -> keras.Model:
    """The encoder called ``encoder``: a model from an image to its features at strides 2..32.

    Args:
        encoder: a name in ``ENCODERS``.
        input_size: the square input size (a multiple of 32).
        weights: None or "none" (random), "imagenet" (mobilenetv2 only) or the path of a
            ``.weights.h5`` file saved by ``build_encoder(encoder, ...).save_weights(path)``.

    Returns:
        An uncompiled ``keras.Model`` named "encoder" with five outputs.

    Raises:
        ValueError: an unknown encoder.
        SegtrainError: weights that do not apply to this encoder, ImageNet weights that
            cannot be had, or a weights file that is missing or does not fit.

    Example::

        build_encoder("resnet18", 64).save_weights("r18.weights.h5")
    """
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of: {', '.join(ENCODERS)}")
    try:
        check_encoder_weights(encoder, weights)
    except ValueError as exc:
        raise SegtrainError(str(exc)) from exc
    if encoder == "mobilenetv2":
        model = _mobilenetv2(input_size, weights == "imagenet")
    else:
        model = _resnet(encoder, input_size)
    if weights not in (None, "none", "imagenet"):
        _load_encoder_weights(model, encoder, Path(weights))
    return model


def _load_encoder_weights(model: keras.Model, encoder: str, path: Path) -> None:
    """Load a ``.weights.h5`` file into ``model``, refusing a missing or ill-fitting one."""
    if not path.is_file():
        raise SegtrainError(f"encoder weights {path} not found; give an existing .weights.h5 file")
    try:
        load_weights(model, path)
    except (ValueError, KeyError, OSError, TypeError, WeightsSkipped) as exc:
        raise SegtrainError(
            f"{path} does not hold {encoder} encoder weights ({first_line(exc)}); "
            f"save them with segtrain.encoders.build_encoder({encoder!r}, SIZE).save_weights(PATH)"
        ) from exc


def copy_torchvision_weights(encoder: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Set a ResNet encoder's weights from torchvision's ResNet of the same depth.

    How ImageNet weights reach the ResNet encoders, which Keras has none for: convert once,
    then train with ``--encoder-weights resnet34-imagenet.weights.h5``.

    Args:
        encoder: ``build_encoder("resnet18" or "resnet34", size)``.
        state_dict: torchvision's ``state_dict()`` as numpy arrays (its ``fc`` is unused).

    Raises:
        KeyError, ValueError: a state dict of another network.

    Example::

        resnet = torchvision.models.resnet34(weights="IMAGENET1K_V1")
        encoder = build_encoder("resnet34", 224)
        copy_torchvision_weights(encoder, {k: v.numpy() for k, v in resnet.state_dict().items()})
        encoder.save_weights("resnet34-imagenet.weights.h5")
    """
    for layer in encoder.layers:
        key = layer.name.replace("_", ".")
        if isinstance(layer, layers.Conv2D):
            layer.set_weights([np.transpose(state_dict[f"{key}.weight"], (2, 3, 1, 0))])
        elif isinstance(layer, layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
            layer.set_weights([state_dict[f"{key}.{name}"] for name in names])


def _decoder_block(x, skip, filters: int, name: str):
    """Upsample 2x, concatenate the skip (if any), two 3x3 conv + BN + ReLU (smp's block)."""
    x = layers.UpSampling2D(2, name=f"{name}_up")(x)
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    for k in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{k}")(x)
        x = layers.ReLU(name=f"{name}_relu{k}")(_batch_norm(f"{name}_bn{k}")(x))
    return x


def encoder_unet(
    encoder: str,
    input_size: int,
    num_outputs: int,
    activation: str,
    encoder_weights: str | None = None,
    decoder_channels: tuple[int, ...] = DECODER_CHANNELS,
) -> keras.Model:
    """Build an uncompiled U-Net on the encoder ``encoder``, as smp's ``Unet(encoder)``.

    Args:
        encoder: a name in ``ENCODERS``.
        input_size: the square input size, a multiple of 32.
        num_outputs: the head's channels (1 for a binary mask, N for N classes).
        activation: the head's activation ("sigmoid" or "softmax").
        encoder_weights: see ``build_encoder``.
        decoder_channels: the five decoder blocks' widths, from stride 16 to stride 1.

    Returns:
        The model: [0, 1] RGB in, ``num_outputs`` maps out; its encoder is the layer
        named "encoder".

    Raises:
        ValueError: a size that is not a multiple of 32.
        SegtrainError: see ``build_encoder``.

    Example::

        model = encoder_unet("resnet34", 256, 1, "sigmoid")
    """
    check_divisible(input_size, len(decoder_channels))
    inputs = keras.Input((input_size, input_size, 3))
    scale, offset = INPUT_SCALING.get(encoder, RESNET_SCALING)
    x = layers.Rescaling(scale, offset, name="encoder_input")(inputs)
    *skips, x = build_encoder(encoder, input_size, encoder_weights)(x)
    skips = [*reversed(skips), None]  # strides 16, 8, 4, 2, then none at full size
    for level, (skip, filters) in enumerate(zip(skips, decoder_channels, strict=True)):
        x = _decoder_block(x, skip, filters, f"decoder{level}")
    outputs = layers.Conv2D(num_outputs, 1, activation=activation, name="head")(x)
    return keras.Model(inputs, outputs, name=f"{encoder}_unet")
