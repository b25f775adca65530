"""The seed's training objective: dice and IoU scores, the bce + dice loss, and compile_model.

Every function is registered with Keras under the ``segtrain`` package, so a model saved to
``.keras`` loads back with ``keras.models.load_model(path)`` once this module is imported,
without ``custom_objects``. Only ``keras.ops`` is used, so any Keras backend works.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="segtrain")
def dice_coeff(y_true, y_pred, smooth: float = 1.0):
    """Dice coefficient 2|A∩B| / (|A| + |B|) over the batch; smoothed: empty masks score 1."""
    y_true = ops.cast(ops.reshape(y_true, [-1]), y_pred.dtype)
    y_pred = ops.reshape(y_pred, [-1])
    intersection = ops.sum(y_true * y_pred)
    return (2.0 * intersection + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


@keras.saving.register_keras_serializable(package="segtrain")
def dice_loss(y_true, y_pred):
    """1 - dice: zero when prediction and truth overlap perfectly."""
    return 1.0 - dice_coeff(y_true, y_pred)


@keras.saving.register_keras_serializable(package="segtrain")
def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy plus dice loss: per-pixel accuracy and whole-mask overlap."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return keras.losses.binary_crossentropy(y_true, y_pred) + dice_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="segtrain")
def iou(y_true, y_pred, smooth: float = 1.0):
    """Intersection over union |A∩B| / |A∪B| over the whole batch, smoothed like dice_coeff."""
    y_true = ops.cast(ops.reshape(y_true, [-1]), y_pred.dtype)
    y_pred = ops.reshape(y_pred, [-1])
    intersection = ops.sum(y_true * y_pred)
    union = ops.sum(y_true) + ops.sum(y_pred) - intersection
    return (intersection + smooth) / (union + smooth)


def compile_model(model: keras.Model, lr: float = 1e-4, xla: bool = False) -> keras.Model:
    """Compile ``model`` as the seed does (RMSprop, bce + dice loss, dice metric); return it.

    ``xla`` compiles the train step with XLA (``jit_compile``), which Keras leaves off on
    CPU-only machines; on 2 CPU cores it made the 256 U-Net ~1.1x faster and the small 128 one
    slower (docs/benchmarks.md), hence off by default.
    """
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=lr),
        loss=bce_dice_loss,
        metrics=[dice_coeff],
        jit_compile=xla,
    )
    return model
