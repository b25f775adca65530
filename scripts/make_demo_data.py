"""Build the packaged offline demo dataset ``demo/membrane`` from ../shared/data/membrane.

The 30 ISBI-2012 EM image/mask pairs (512x512 grey PNG) are downscaled to 256x256: images with
area averaging (cv2.INTER_AREA, no aliasing), masks with nearest neighbour (they stay 0/255).
The result is built with brinelite and published into the demo registry shipped in the package
(replacing an earlier build), so ``brinelite install demo/membrane`` works offline. Run it from
anywhere:

    .venv/bin/python scripts/make_demo_data.py

The terms of the data are in brinelite/demo/ATTRIBUTION.md.
"""

import shutil
import tempfile
from pathlib import Path

import cv2

import brinelite
import brinelite.publishing

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "membrane"
REGISTRY = REPO / "brinelite" / "demo" / "registry"
SIZE = 256
DESCRIPTION = (
    "ISBI 2012 EM segmentation (Drosophila VNC, serial-section TEM): 30 grey image/mask pairs "
    "downscaled to 256x256; mask 255 = cell interior, 0 = membrane. Via zhixuhao/unet."
)
LICENSE = (
    "Research / non-commercial use; cite Arganda-Carreras et al. 2015 and Cardona et al. 2010. "
    "See brinelite/demo/ATTRIBUTION.md."
)


def downscale(src: Path, dest: Path, interpolation: int) -> None:
    """Write ``src`` resized to SIZE x SIZE with ``interpolation`` to ``dest``, unchanged depth."""
    image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dest), cv2.resize(image, (SIZE, SIZE), interpolation=interpolation))


def main() -> None:
    """Downscale every pair into a temporary folder, build the archive and publish it."""
    with tempfile.TemporaryDirectory(prefix="demo-membrane-") as tmp:
        folder = Path(tmp) / "membrane"
        for image in sorted((SOURCE / "images").glob("*.png")):
            downscale(image, folder / "images" / image.name, cv2.INTER_AREA)
            mask = SOURCE / "masks" / image.name
            downscale(mask, folder / "masks" / image.name, cv2.INTER_NEAREST)
        result = brinelite.build(
            folder,
            "demo/membrane",
            "1.0.0",
            out=Path(tmp) / "membrane-1.0.0.tar.gz",
            description=DESCRIPTION,
            license=LICENSE,
        )
        # Versions are immutable in a registry: replace the demo's entry on a rebuild.
        shutil.rmtree(REGISTRY / "demo" / "membrane", ignore_errors=True)
        brinelite.publishing.publish(result.archive, str(REGISTRY))
    # The publish lock is only needed while publishing; keep it out of the package.
    (REGISTRY / "demo" / "membrane" / ".index.lock").unlink()
    print(f"Published {result.manifest.name}@{result.manifest.version} to {REGISTRY}")


if __name__ == "__main__":
    main()
