"""The exceptions segtrain raises for mistakes a user can fix, and for a run that stopped.

The ``segtrain`` command catches them (with ``brinelite.BrineliteError`` for dataset problems) and
prints its message as one line, never a traceback. Messages say what is wrong and how to fix it.
A message that quotes another library's exception quotes its ``first_line``.
"""


class SegtrainError(Exception):
    """A bad option, an unusable dataset for training, or a run folder that lacks what is asked."""


class RunStopped(SegtrainError):
    """A run that ended before its last epoch, by Ctrl-C (``interrupted``) or a failure.

    The message says what the run folder keeps and how to continue (``--resume``:
    ``resumable``), or that it was left as it was.
    """

    def __init__(self, message: str, interrupted: bool = False, resumable: bool = True) -> None:
        super().__init__(message)
        self.interrupted, self.resumable = interrupted, resumable


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters, to quote in a
    one-line error; the exception's class name if it has no message.

    Example::

        first_line(OSError("disk full\nmore"))  # "disk full"
    """
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:limit]


class RunRefused(SegtrainError):
    """A refusal every process of a data-parallel run reaches together: they all end.

    Raised by the secret's handshake (a process refused) and by the agreement on dataset and
    options. Every process then leaves JAX's coordination service together before it exits
    (``segtrain.distributed.exit_on_failure``): process 0's end ends the service, which JAX
    turns into an abort of every process still joined.
    """
