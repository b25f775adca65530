"""The training objectives: binary (Carvana's bce + dice) and multi-class (for class maps).

``dice`` and ``iou`` are the one implementation of each binary score: the training metric
(smoothed, over a batch) and ``segtrain.evaluate``'s per-image scores (``smooth=0`` on
thresholded masks). For a class map's N classes, the model gives N softmax probabilities per
pixel and the target holds training indices (0..N-1, void N): ``SemanticLoss`` is sparse
categorical cross-entropy (optionally class-weighted) plus 1 - ``class_dice``, the mean soft
dice of the N classes, and void pixels count in neither. The training metric of both kinds is
named ``soft_dice`` (``METRIC``: history columns ``soft_dice`` and ``val_soft_dice``): a soft
score of probabilities at the training size, not the thresholded full-size ``dice`` that
``segtrain evaluate`` reports.
Every function is registered with Keras under the ``segtrain`` package, so a model saved to
``.keras`` loads back with ``keras.models.load_model(path)`` once this module is imported,
without ``custom_objects``. Only ``keras.ops`` is used, so any Keras backend works.
"""

from segtrain.runtime import import_keras

keras = import_keras()
ops = keras.ops

METRIC = "soft_dice"  # the training metric's name, for both kinds of mask


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


def _valid_pixels(y_true, y_pred):
    """Per pixel: probabilities (P, N), one-hot truth (P, N), and 1 where not void, else 0.

    Void pixels (index N, or any index past the classes) get an all-zero one-hot row and a
    zero weight, so nothing computed from them reaches a loss or a score.
    """
    classes = y_pred.shape[-1]
    labels = ops.cast(ops.reshape(y_true, [-1]), "int32")
    valid = ops.less(labels, classes)
    labels = ops.where(valid, labels, 0)
    weight = ops.cast(valid, y_pred.dtype)
    probabilities = ops.reshape(y_pred, [-1, classes])
    one_hot = ops.one_hot(labels, classes, dtype=y_pred.dtype) * weight[:, None]
    return probabilities, one_hot, labels, weight


@keras.saving.register_keras_serializable(package="segtrain")
def class_dice(y_true, y_pred, smooth: float = 1.0):
    """Mean over the classes of each class's soft dice, void pixels left out.

    ``y_true`` holds training indices (void = the number of classes), ``y_pred`` per-class
    probabilities (last axis). A class absent from both scores 1 (smoothed, as ``dice``).
    """
    probabilities, one_hot, _, weight = _valid_pixels(y_true, y_pred)
    probabilities = probabilities * weight[:, None]
    overlap = ops.sum(probabilities * one_hot, axis=0)
    sizes = ops.sum(probabilities, axis=0) + ops.sum(one_hot, axis=0)
    return ops.mean(_ratio(2.0 * overlap, sizes, smooth))


@keras.saving.register_keras_serializable(package="segtrain")
class SemanticLoss(keras.losses.Loss):
    """Sparse categorical cross-entropy + (1 - ``class_dice``) over the pixels that are not void.

    The cross-entropy is the mean over non-void pixels, each weighted by its class's weight
    (``class_weights``, one per class; None = all 1): sum(w * ce) / sum(w). Changing what the
    model predicts on void pixels changes neither term.

    Example::

        loss = SemanticLoss(class_weights=[0.5, 2.0, 1.0])
        value = loss(labels, probabilities)  # labels (B, H, W, 1), probabilities (B, H, W, 3)
    """

    def __init__(
        self, class_weights: list[float] | None = None, name: str = "semantic_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        """The loss of one batch (a scalar)."""
        probabilities, _, labels, weight = _valid_pixels(y_true, y_pred)
        entropy = ops.sparse_categorical_crossentropy(labels, probabilities)
        if self.class_weights is not None:
            table = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
            weight = weight * ops.take(table, labels)
        entropy = ops.sum(entropy * weight) / ops.maximum(ops.sum(weight), 1e-7)
        return entropy + 1.0 - class_dice(y_true, y_pred)

    def get_config(self) -> dict:
        """What ``keras.saving`` stores to rebuild the loss."""
        return {**super().get_config(), "class_weights": self.class_weights}


OPTIMIZERS = {  # RunConfig.optimizer's choices
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
}


def _compile(model: keras.Model, loss, metric, lr: float, xla: bool, optimizer: str) -> keras.Model:
    """Compile with ``optimizer`` (a key of ``OPTIMIZERS``) at ``lr``, ``loss``, ``metric``."""
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate=lr),
        loss=loss,
        metrics=[metric],
        jit_compile=True if xla else "auto",  # off = Keras' choice: JAX always compiles
    )
    return model


def compile_semantic(
    model: keras.Model,
    lr: float = 1e-4,
    xla: bool = False,
    class_weights: list[float] | None = None,
    optimizer: str = "rmsprop",
) -> keras.Model:
    """Compile a softmax ``model`` for a class map: ``SemanticLoss``, the ``soft_dice`` metric.

    Args:
        model: a model whose output's last axis holds one probability per class.
        lr, xla, optimizer: as ``compile_model``.
        class_weights: the cross-entropy's weight per class (see ``segtrain.semantic``).

    Returns:
        ``model``, compiled; its metric is ``class_dice`` under the name ``soft_dice``.

    Example::

        compile_semantic(unet(64, 8, 3, num_classes=11, activation="softmax"), lr=1e-3)
    """
    metric = keras.metrics.MeanMetricWrapper(class_dice, name=METRIC)
    return _compile(model, SemanticLoss(class_weights), metric, lr, xla, optimizer)


def compile_model(
    model: keras.Model, lr: float = 1e-4, xla: bool = False, optimizer: str = "rmsprop"
) -> keras.Model:
    """Compile ``model`` as the Carvana workflow does (RMSprop, bce + dice loss, dice metric).

    ``optimizer`` names another (``OPTIMIZERS``: "adam", "adamw" with Keras' default weight
    decay 0.004), at the rate ``lr``. The metric is ``dice`` (smoothed, of the probabilities)
    under the name ``soft_dice``.

    ``xla`` compiles the train step with XLA (``jit_compile``), which Keras leaves off on
    CPU-only machines under TensorFlow; on 2 CPU cores it made the 256 U-Net ~1.1x faster and
    the small 128 one slower (docs/benchmarks.md), hence off by default. Off means Keras'
    own choice ("auto"), not eager steps: JAX always compiles with XLA, TensorFlow on GPUs.
    """
    metric = keras.metrics.MeanMetricWrapper(dice, name=METRIC)
    return _compile(model, bce_dice_loss, metric, lr, xla, optimizer)
