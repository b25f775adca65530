"""The shared secret of a data-parallel run, and the handshake in which every process proves it.

JAX's coordination service (process 0's ``--coordinator`` port) lets any program that reaches
it join a run as one of its processes: it authenticates nobody. So right after joining, before
anything about the run is exchanged, the processes prove to process 0 that they hold the run's
secret (``SEGTRAIN_SECRET``, or the file ``SEGTRAIN_SECRET_FILE`` names), by HMAC-SHA256
challenge and response over the coordination service's key-value store:

1. process 0 posts a random challenge;
2. every other process posts a random nonce of its own and its proof: the HMAC of the run
   (the coordinator address every process joined at, the process count), its id, the
   challenge and its nonce;
3. process 0 checks every proof, then posts its verdict, proven too (process 0 holds the
   secret): a refusal naming the processes that failed, proven for each one's nonce, or its
   acceptance of every nonce;
4. every other process checks process 0's proof. A refusal is a ``RunRefused``: every process
   ends with one line, then they leave JAX's coordination service together (JAX's shutdown
   barrier, see ``segtrain.distributed.exit_on_failure``), since process 0's end ends the
   service and JAX aborts every process still joined to it.

Every HMAC names the run's coordinator address, so a proof made for one coordinator is worth
nothing at another: a rogue coordinator that an honest process reached cannot relay that
process's answer into a real run as its own, and a refusal it makes up is told apart.

A program without the secret sees a random challenge and a refusal. The secret itself never
crosses the network, only HMACs of random values, which an eavesdropper could still test
guesses against offline: hence at least ``MIN_SECRET`` bytes. ``digest`` keys the later
agreement on dataset and options with the same secret, so that it reveals nothing either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from segtrain.errors import RunRefused, SegtrainError

MIN_SECRET = 16  # bytes
MAX_SECRET_FILE = 4096  # bytes: a secret, not a file to slurp (/dev/zero, a log)
TIMEOUT = 120.0  # seconds for every process to post its part, once all have joined
PREFIX = "segtrain/handshake/"
NONCE = 32  # bytes of every random challenge and nonce
MAC = 32  # bytes of an HMAC-SHA256
REFUSED = b"refused"  # process 0's verdict of refusal starts so (then its proof, who failed)
FIX = (
    "give every process of the run the same secret in SEGTRAIN_SECRET or in a file named by "
    "SEGTRAIN_SECRET_FILE"
)


class Store(Protocol):
    """The part of JAX's ``DistributedRuntimeClient`` (its key-value store) the handshake uses."""

    def key_value_set_bytes(self, key: str, value: bytes) -> None: ...

    def blocking_key_value_get_bytes(self, key: str, timeout_in_ms: int) -> bytes: ...


def read_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """The run's secret: ``SEGTRAIN_SECRET``, or the contents of the file ``SEGTRAIN_SECRET_FILE``.

    Leading and trailing whitespace (a file's final newline) is not part of it. The secret is
    never part of an option, a message or a file segtrain writes.

    Args:
        environ: the environment to read (default ``os.environ``; tests pass a dict).

    Raises:
        SegtrainError: neither variable or both set, an unreadable file, a secret shorter than
            ``MIN_SECRET`` bytes.

    Example::

        read_secret({"SEGTRAIN_SECRET": "3f9c2a7b1e4d8f06a5c3b2e1d0f9a8b7"})
    """
    environ = os.environ if environ is None else environ
    value, path = environ.get("SEGTRAIN_SECRET"), environ.get("SEGTRAIN_SECRET_FILE")
    if value is not None and path is not None:
        raise SegtrainError(
            "both SEGTRAIN_SECRET and SEGTRAIN_SECRET_FILE are set; unset one of them"
        )
    if value is None and path is None:
        raise SegtrainError(
            "a data-parallel run of several processes needs a shared secret, so that no other "
            "program can join it: put one in a file (python -c 'import secrets; "
            "print(secrets.token_hex(32))' > run.secret; chmod 600 run.secret), copy it to "
            "every machine and set SEGTRAIN_SECRET_FILE=run.secret for every process (or "
            "SEGTRAIN_SECRET to the secret itself)"
        )
    where = "SEGTRAIN_SECRET" if path is None else f"SEGTRAIN_SECRET_FILE {path!r}"
    secret = os.fsencode(value).strip() if path is None else _read_file(path)
    if len(secret) < MIN_SECRET:
        raise SegtrainError(
            f"the secret in {where} is {len(secret)} bytes, fewer than {MIN_SECRET}: make a "
            "long random one (python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return secret


def _read_file(path: str) -> bytes:
    """The stripped contents of the secret file ``path``, read no further than the cap."""
    try:
        with Path(path).open("rb") as handle:
            secret = handle.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise SegtrainError(
            f"cannot read the secret file SEGTRAIN_SECRET_FILE {path!r} "
            f"({exc.strerror or type(exc).__name__}); {FIX}"
        ) from exc
    if len(secret) > MAX_SECRET_FILE:
        raise SegtrainError(
            f"SEGTRAIN_SECRET_FILE {path!r} holds more than {MAX_SECRET_FILE} bytes: "
            "it should hold the secret alone"
        )
    return secret.strip()


def digest(secret: bytes, what: str, text: str) -> bytes:
    """The HMAC-SHA256 of ``text`` under ``secret``, for comparing ``what`` across processes.

    Example::

        digest(secret, "dataset", "gen/discs@1.0.0 (sha256 ..., fingerprint ...)")  # 32 bytes
    """
    return _mac(secret, b"agree", what.encode(), text.encode())


def prove(
    store: Store, secret: bytes, process_id: int, num_processes: int, coordinator: str
) -> None:
    """Prove this process holds ``secret`` and check that the others do (see the module).

    Call it right after joining, before anything else is exchanged.

    Args:
        store: the key-value store every process of the run shares (JAX's client).
        secret: this process's secret (``read_secret``).
        process_id, num_processes: this process and the run's process count.
        coordinator: the ``HOST:PORT`` every process joined at (the first of ``--coordinator``);
            every process must name it alike.

    Raises:
        RunRefused: process 0: which processes failed to prove the secret (they are told so);
            the others: process 0 refused this one (or another), proven or not.
        SegtrainError: process 0 did not prove the secret in its acceptance, or took no part.

    Example::

        prove(jax._src.distributed.global_state.client, read_secret(), 1, 2, "10.0.0.1:12345")
    """
    run = coordinator.strip().lower().encode() + num_processes.to_bytes(4, "big")
    if process_id == 0:
        _check_peers(store, secret, num_processes, run)
    else:
        _answer(store, secret, process_id, num_processes, run)


def _check_peers(store: Store, secret: bytes, num_processes: int, run: bytes) -> None:
    """Process 0's side: challenge, check every answer, post the verdict."""
    challenge = secrets.token_bytes(NONCE)
    _post(store, "challenge", challenge)
    deadline = time.monotonic() + TIMEOUT
    nonces, failed = [], []
    for peer in range(1, num_processes):
        answer = _get(store, f"answer/{peer}", deadline) or b""
        nonce, proof = answer[:NONCE], answer[NONCE:]
        expected = _mac(secret, b"process", run, _id(peer), challenge, nonce)
        if not hmac.compare_digest(proof, expected):
            failed.append(peer)
        nonces.append(nonce)
    if not failed:
        proof = _mac(secret, b"coordinator", run, challenge, *nonces)
        _post(store, "verdict", b"accepted" + proof)
        return
    refused = b"".join(map(_id, failed))
    proofs = [
        _mac(secret, REFUSED, challenge, _id(peer), nonce, refused)
        for peer, nonce in enumerate(nonces, 1)
    ]  # one for each process's nonce: no refusal of another answer passes for this one
    _post(store, "verdict", REFUSED + b"".join(proofs) + refused)
    names = ", ".join(map(str, failed))
    raise RunRefused(
        f"process {names} of {num_processes} did not prove the run's secret (another secret, "
        "another --coordinator, none in time, or not segtrain) and was refused before anything "
        f"about the run was exchanged; {FIX}"
    )


def _answer(store: Store, secret: bytes, process_id: int, num_processes: int, run: bytes) -> None:
    """The side of every other process: answer the challenge, read and check the verdict."""
    deadline = time.monotonic() + TIMEOUT
    challenge = _require(store, "challenge", deadline)
    nonce = secrets.token_bytes(NONCE)
    proof = _mac(secret, b"process", run, _id(process_id), challenge, nonce)
    _post(store, f"answer/{process_id}", nonce + proof)
    verdict = _require(store, "verdict", deadline + TIMEOUT)
    if verdict.startswith(REFUSED):
        _refused(secret, process_id, num_processes, challenge, nonce, verdict[len(REFUSED) :])
    nonces = [
        nonce if peer == process_id else _require(store, f"answer/{peer}", deadline)[:NONCE]
        for peer in range(1, num_processes)
    ]
    expected = _mac(secret, b"coordinator", run, challenge, *nonces)
    if not hmac.compare_digest(verdict, b"accepted" + expected):
        raise SegtrainError(
            "process 0 at the coordinator did not prove the run's secret (another secret, or "
            f"not segtrain); process {process_id} told it nothing about the run; {FIX}"
        )


def _refused(
    secret: bytes,
    process_id: int,
    num_processes: int,
    challenge: bytes,
    nonce: bytes,
    refusal: bytes,
) -> None:
    """Raise the refusal process 0 posted: proven (it names who failed) or not (who knows)."""
    proof = refusal[(process_id - 1) * MAC : process_id * MAC]
    refused = refusal[(num_processes - 1) * MAC :]
    expected = _mac(secret, REFUSED, challenge, _id(process_id), nonce, refused)
    if not hmac.compare_digest(proof, expected):
        raise RunRefused(
            f"process 0 refused process {process_id} without proving the run's secret: this "
            "process holds another secret than process 0, or the coordinator it reached is not "
            f"the run's (check --coordinator); {FIX}"
        )
    ids = [int.from_bytes(refused[k : k + 4], "big") for k in range(0, len(refused), 4)]
    if process_id in ids:
        raise RunRefused(
            f"process 0 refused process {process_id}, though both hold the run's secret: they "
            "name another coordinator or process count; give every process the same "
            "--coordinator (process 0's address, written alike) and --num-processes"
        )
    raise RunRefused(
        f"process 0 refused process {', '.join(map(str, ids))} (not this one, process "
        f"{process_id}): it did not prove the run's secret; {FIX}"
    )


def _post(store: Store, key: str, value: bytes) -> None:
    """Post ``value`` at ``key`` once; a key someone else posted first stops the handshake."""
    try:
        store.key_value_set_bytes(PREFIX + key, value)
    except Exception as exc:  # noqa: BLE001 (JAX's runtime error: the key exists, or no service)
        raise SegtrainError(
            f"cannot post {key} of the secret's handshake (another program posted it first, or "
            f"the coordinator is gone); start the run again, on a trusted network; {FIX}"
        ) from exc


def _get(store: Store, key: str, deadline: float) -> bytes | None:
    """The value posted at ``key``, waiting until ``deadline`` (time.monotonic); None: none."""
    remaining = max(1, int((deadline - time.monotonic()) * 1000))
    try:
        return store.blocking_key_value_get_bytes(PREFIX + key, remaining)
    except Exception:  # noqa: BLE001 (JAX's runtime error: a timeout, or the service is gone)
        return None


def _require(store: Store, key: str, deadline: float) -> bytes:
    """The value process 0 (or a peer) posted at ``key``; refuse to go on without it."""
    value = _get(store, key, deadline)
    if value is None:
        raise SegtrainError(
            f"the run's process 0 did not take part in proving the run's secret ({key} not "
            "posted in time, or the coordinator is gone): is it segtrain, of the same version? "
            f"{FIX}"
        )
    return value


def _id(process_id: int) -> bytes:
    return process_id.to_bytes(4, "big")


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over ``label`` and ``parts``, each prefixed with its length (no ambiguity)."""
    message = b"".join(len(part).to_bytes(4, "big") + part for part in (label, *parts))
    return hmac.new(secret, b"segtrain handshake 2" + message, hashlib.sha256).digest()
