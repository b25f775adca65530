"""The U-Net family by name, as data: each model's width, depth and the input sizes it takes.

No Keras here, so a run's options can be checked (``segtrain.config``) before anything is
imported or built; ``segtrain.models`` builds the networks from these specs.

- ``unet128``, ``unet256``, ``unet512``, ``unet1024`` are the Carvana presets
  (petrosgk/Kaggle-Carvana-Image-Masking-Challenge, ``model/u_net.py``). Their layout is tied to
  their own size: any other input size is refused.
- ``small`` (base 16, depth 4) and ``tiny`` (base 8, depth 3) are light models for CPU runs. They
  take any input size that is a multiple of 2**depth (16 and 8); the default is 128, where
  ``small`` learns most per CPU-minute (benchmark 6 in docs/benchmarks.md).
"""

from dataclasses import dataclass

DEFAULT_SIZE = 128
MAX_SIZE = 4096  # 4096^2 RGB floats are 200 MB a sample; a run folder saying 65536 asked 51 GB


@dataclass(frozen=True)
class Architecture:
    """One U-Net of the family: first width, depth, and its fixed size (None: any valid size)."""

    base_filters: int
    depth: int
    fixed_size: int | None = None

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
}


def architecture(name: str) -> Architecture:
    """The architecture called ``name``; a ValueError listing the names if there is none."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
