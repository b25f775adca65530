#!/usr/bin/env bash
# The seed workflow on the packaged demo dataset, one command per step (called by `make demo`):
#   bash scripts/demo.sh DEMO_DIR VENV_BIN       (with BRINELITE_HOME set, as the Makefile does)
# Installs demo/membrane offline, previews it, trains a small U-Net for a few minutes on CPU,
# evaluates it against the trivial baselines and writes masks and overlays of the validation images.
set -euo pipefail

demo_dir=$1
bin=$2
run="$demo_dir/run"

"$bin/brinelite" install demo/membrane
"$bin/brinelite" show demo/membrane --out "$demo_dir/dataset.png"
rm -rf "$run"  # a fresh run each time; keep one with: segtrain train ... --out elsewhere
"$bin/segtrain" train demo/membrane --val 6 --epochs 25 --out "$run"
"$bin/segtrain" evaluate "$run"
"$bin/segtrain" predict "$run" --out "$demo_dir/predictions"

echo
echo "Dataset preview:   $demo_dir/dataset.png"
echo "Training curves:   $run/curves.png"
echo "Overlays (yellow = confident foreground): $demo_dir/predictions/contact_sheet.png"
echo "                   and $demo_dir/predictions/*.overlay.png"
