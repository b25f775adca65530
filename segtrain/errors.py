"""The exception segtrain raises for mistakes a user can fix.

The ``segtrain`` command catches it (with ``brinelite.BrineliteError`` for dataset problems) and
prints its message as one line, never a traceback. Messages say what is wrong and how to fix it.
"""


class SegtrainError(Exception):
    """A bad option, an unusable dataset for training, or a run folder that lacks what is asked."""


class RunRefused(SegtrainError):
    """A refusal every process of a data-parallel run reaches together: they all end.

    Raised by the secret's handshake (a process refused) and by the agreement on dataset and
    options. Every process then leaves JAX's coordination service together before it exits
    (``segtrain.distributed.exit_on_failure``): process 0's end ends the service, which JAX
    turns into an abort of every process still joined.
    """
