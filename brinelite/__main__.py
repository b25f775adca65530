"""``python -m brinelite`` runs the CLI."""

from .cli import main

main()
