"""The U-Net family by name, as data: each model's width, depth and the input sizes it takes.

No Keras here, so a run's options can be checked (``segtrain.config``) before anything is
imported or built; ``segtrain.models`` builds the networks from these specs.

- ``unet128``, ``unet256``, ``unet512``, ``unet1024`` are the Carvana presets
  (petrosgk/Kaggle-Carvana-Image-Masking-Challenge, ``model/u_net.py``). Their layout is tied to
  their own size: any other input size is refused.
- ``small`` (base 16, depth 4) and ``tiny`` (base 8, depth 3) are light models for CPU runs. They
  take any input size that is a multiple of 2**depth (16 and 8); the default is 128, where
  ``small`` learns most per CPU-minute (benchmark 6 in docs/benchmarks.md).
- ``resnet18-unet``, ``resnet34-unet``, ``mobilenetv2-unet`` are U-Nets on a classification
  encoder, as segmentation-models-pytorch's ``Unet`` (``segtrain.encoders``): five levels,
  decoder widths 256..16 (base 16, depth 5), any multiple of 32. Only they take pretrained
  encoder weights (``check_encoder_weights``).
"""

from dataclasses import dataclass

DEFAULT_SIZE = 128
MAX_SIZE = 4096  # 4096^2 RGB floats are 200 MB a sample; a run folder saying 65536 asked 51 GB


@dataclass(frozen=True)
class Architecture:
    """One U-Net of the family: first width, depth, and its fixed size (None: any valid size).

    ``encoder`` names the classification backbone of an encoder U-Net (``segtrain.encoders``;
    None: the plain U-Net); its decoder widths are base_filters * 2**level, as the plain one's.
    """

    base_filters: int
    depth: int
    fixed_size: int | None = None
    encoder: str | None = None

    def input_size(self, name: str, size: int | None) -> int:
        """The input size to build ``name`` at: ``size`` checked, or the model's default.

        Raises:
            ValueError: a preset asked for another size than its own, a size the depth
                cannot halve ``depth`` times, or one above ``MAX_SIZE``.
        """
        if self.fixed_size is not None:
            if size not in (None, self.fixed_size):
                raise ValueError(
                    f"{name} takes input size {self.fixed_size} only, got {size}; "
                    "use 'small' or 'tiny' for other sizes"
                )
            return self.fixed_size
        size = DEFAULT_SIZE if size is None else size
        check_divisible(size, self.depth)
        if size > MAX_SIZE:
            raise ValueError(f"input size {size} is above {MAX_SIZE}, the largest segtrain builds")
        return size


def check_divisible(size: int, depth: int) -> None:
    """Refuse an input size that ``depth`` 2x2 poolings cannot halve exactly (ValueError)."""
    divisor = 2**depth
    if size < divisor or size % divisor:
        raise ValueError(
            f"input size {size} is not divisible by 2**depth = {divisor}; "
            f"pick a multiple of {divisor}"
        )


# Each Carvana preset doubles its width from ``base_filters`` up to 512; the centre has 1024.
ARCHITECTURES: dict[str, Architecture] = {
    "unet128": Architecture(64, 4, 128),
    "unet256": Architecture(32, 5, 256),
    "unet512": Architecture(16, 6, 512),
    "unet1024": Architecture(8, 7, 1024),
    "small": Architecture(16, 4),
    "tiny": Architecture(8, 3),
    "resnet18-unet": Architecture(16, 5, encoder="resnet18"),
    "resnet34-unet": Architecture(16, 5, encoder="resnet34"),
    "mobilenetv2-unet": Architecture(16, 5, encoder="mobilenetv2"),
}
IMAGENET_ENCODERS = ("mobilenetv2",)  # the encoders keras.applications has ImageNet weights for
WEIGHTS_SUFFIX = ".weights.h5"


def architecture(name: str) -> Architecture:
    """The architecture called ``name``; a ValueError listing the names if there is none."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def check_encoder_weights(encoder: str | None, weights: str | None) -> None:
    """Refuse encoder weights that cannot apply (ValueError): checked before Keras loads.

    ``weights`` is None or "none" (random), "imagenet" or a path ending in ``.weights.h5``
    (whether the file exists and fits is checked when the encoder is built).
    """
    if weights in (None, "none"):
        return
    if encoder is None:
        names = ", ".join(name for name, spec in ARCHITECTURES.items() if spec.encoder)
        raise ValueError(
            f"--encoder-weights is for the encoder U-Nets ({names}); this model has no "
            "pretrained encoder: leave it at none"
        )
    if weights == "imagenet":
        if encoder not in IMAGENET_ENCODERS:
            raise ValueError(
                f"{encoder} has no ImageNet weights in Keras; convert torchvision's "
                "(segtrain.encoders.copy_torchvision_weights) and pass --encoder-weights PATH "
                f"of the {WEIGHTS_SUFFIX} file, or use mobilenetv2-unet"
            )
        return
    if not weights.endswith(WEIGHTS_SUFFIX):
        raise ValueError(
            f"--encoder-weights takes none, imagenet or the path of a {WEIGHTS_SUFFIX} file "
            f"the encoder saved, not {weights!r}"
        )
