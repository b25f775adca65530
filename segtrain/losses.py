"""The seed's training objective: dice and IoU, the bce + dice loss, and compile_model.

``dice`` and ``iou`` are the one implementation of each score: the training metric (smoothed,
over a batch) and ``segtrain.evaluate``'s per-image scores (``smooth=0`` on thresholded masks).
Every function is registered with Keras under the ``segtrain`` package, so a model saved to
``.keras`` loads back with ``keras.models.load_model(path)`` once this module is imported,
without ``custom_objects``. Only ``keras.ops`` is used, so any Keras backend works.
"""

from segtrain.runtime import import_keras

keras = import_keras()
ops = keras.ops


def _ratio(numerator, denominator, smooth: float):
    """(numerator + smooth) / (denominator + smooth), and 1 when both are 0 (empty masks agree)."""
    empty = ops.cast(ops.equal(denominator + smooth, 0), denominator.dtype)
    return (numerator + smooth + empty) / (denominator + smooth + empty)


def _flat(y_true, y_pred):
    """Both masks as flat float tensors of the prediction's float type (float32 for booleans)."""
    y_pred = ops.reshape(y_pred, [-1])
    if not keras.backend.is_float_dtype(y_pred.dtype):
        y_pred = ops.cast(y_pred, "float32")
    return ops.cast(ops.reshape(y_true, [-1]), y_pred.dtype), y_pred


@keras.saving.register_keras_serializable(package="segtrain")
def dice(y_true, y_pred, smooth: float = 1.0):
    """Dice 2|A∩B| / (|A| + |B|) over all the pixels given; smoothed: empty masks score 1."""
    y_true, y_pred = _flat(y_true, y_pred)
    return _ratio(2.0 * ops.sum(y_true * y_pred), ops.sum(y_true) + ops.sum(y_pred), smooth)


@keras.saving.register_keras_serializable(package="segtrain")
def iou(y_true, y_pred, smooth: float = 1.0):
    """Intersection over union |A∩B| / |A∪B| over all the pixels given, smoothed like dice."""
    y_true, y_pred = _flat(y_true, y_pred)
    intersection = ops.sum(y_true * y_pred)
    return _ratio(intersection, ops.sum(y_true) + ops.sum(y_pred) - intersection, smooth)


@keras.saving.register_keras_serializable(package="segtrain")
def dice_loss(y_true, y_pred):
    """1 - dice: zero when prediction and truth overlap perfectly."""
    return 1.0 - dice(y_true, y_pred)


@keras.saving.register_keras_serializable(package="segtrain")
def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy plus dice loss: per-pixel accuracy and whole-mask overlap."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return keras.losses.binary_crossentropy(y_true, y_pred) + dice_loss(y_true, y_pred)


def compile_model(model: keras.Model, lr: float = 1e-4, xla: bool = False) -> keras.Model:
    """Compile ``model`` as the seed does (RMSprop, bce + dice loss, dice metric); return it.

    ``xla`` compiles the train step with XLA (``jit_compile``), which Keras leaves off on
    CPU-only machines under TensorFlow; on 2 CPU cores it made the 256 U-Net ~1.1x faster and
    the small 128 one slower (docs/benchmarks.md), hence off by default. Off means Keras'
    own choice ("auto"), not eager steps: JAX always compiles with XLA, TensorFlow on GPUs.
    """
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=lr),
        loss=bce_dice_loss,
        metrics=[dice],
        jit_compile=True if xla else "auto",
    )
    return model
