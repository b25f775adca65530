"""The exceptions brinelite raises.

Every failure a user can cause or meet is a :class:`BrineliteError`; the CLI
catches that one class and prints its message on a single line. The message is
written for the user: it says what is wrong and, where it can, how to fix it.
"""


class BrineliteError(Exception):
    """Base class of every error brinelite raises on purpose."""


class InvalidNameError(BrineliteError, ValueError):
    """A dataset name or version does not follow the ``scope/name[@version]`` rules."""


class NotInstalledError(BrineliteError, LookupError):
    """The dataset (or that version of it) is not in the local cache."""


class DatasetNotFoundError(BrineliteError, LookupError):
    """No configured registry knows the dataset or version asked for."""


class AlreadyExistsError(BrineliteError):
    """Something that must not be overwritten already exists (an installed or published version)."""


class BuildError(BrineliteError):
    """A source folder or CSV cannot be turned into a dataset."""


class LabelMapError(BuildError):
    """Masks without a class map hold a few small values: class ids, not a binary mask.

    ``skeleton`` is a ``classes.json`` object naming the values found, for the user to edit.
    """

    def __init__(self, message: str, values: list[int], skeleton: dict) -> None:
        super().__init__(message)
        self.values = values
        self.skeleton = skeleton


class ManifestError(BrineliteError):
    """A manifest or rows table is missing, malformed or disagrees with the files."""


class IntegrityError(BrineliteError):
    """A file's size or sha256 differs from the one it was promised to have."""


class ArchiveError(BrineliteError):
    """An archive is corrupt, truncated, of an unknown kind, or unsafe to extract."""


class DownloadError(BrineliteError):
    """A download failed for good (after retries), or the server sent something unusable."""


class AuthError(DownloadError):
    """The server refused the request for lack of (valid) credentials."""


class RegistryError(BrineliteError):
    """A registry is misconfigured, unreachable or holds an invalid index."""


class UnreachableError(RegistryError):
    """No registry that was asked could be reached (network down, server off, timeouts)."""


class InvalidIndexError(RegistryError):
    """A registry's index file breaks its documented schema (or its size cap)."""


class CacheError(BrineliteError):
    """The cache folder cannot be used (unwritable, disk full, locked too long)."""


class WriteError(BrineliteError, OSError):
    """Writing a file failed: disk full, a file-size limit, no permission (``build``, ``publish``).

    Also an ``OSError``, so code that caught the bare ``OSError`` still does.
    """


class DataError(BrineliteError):
    """A row's files cannot be decoded, or processing a sample failed; names the row and file."""


class UnknownSplitError(DataError, LookupError):
    """A split name the dataset does not declare (the message lists those it does)."""


class OfflineError(BrineliteError):
    """The network is needed, but ``BRINELITE_OFFLINE`` forbids it."""


class LockFileError(BrineliteError):
    """A lock file (``brinelite.lock``) is unreadable or malformed, or cannot be written."""


def disk_advice(exc: OSError) -> str:
    """What an ``OSError`` from writing a file means for the user, and what to do, in words.

    A full disk, a file-size limit (``ulimit -f``), a read-only or forbidden folder and a
    name too long for the file system each get their own advice; anything else its
    ``strerror``. Used to turn a write failure into one line of a typed error.

    >>> import errno
    >>> disk_advice(OSError(errno.ENOSPC, "No space left on device"))
    'No space left on device: free some space'
    """
    import errno

    advice = {
        errno.ENOSPC: "free some space",
        errno.EDQUOT: "free some space (over the disk quota)",
        errno.EFBIG: "a file grew past the size this process may write (ulimit -f)",
        errno.EACCES: "choose a folder you can write to",
        errno.EPERM: "choose a folder you can write to",
        errno.EROFS: "choose a folder on a writable file system",
        errno.ENAMETOOLONG: "use a shorter name (at most 255 bytes per path part)",
    }.get(exc.errno or 0)
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {advice}" if advice else reason
