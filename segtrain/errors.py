"""The exception segtrain raises for mistakes a user can fix.

The ``segtrain`` command catches it (with ``brinelite.BrineliteError`` for dataset problems) and
prints its message as one line, never a traceback. Messages say what is wrong and how to fix it.
"""


class SegtrainError(Exception):
    """A bad option, an unusable dataset for training, or a run folder that lacks what is asked."""
