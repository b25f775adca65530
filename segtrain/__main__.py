"""``python -m segtrain``: the same as the ``segtrain`` command."""

from segtrain.cli import main

main()
