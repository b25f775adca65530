"""Registries that cannot hurt you: tokens kept to their host, malformed or huge indexes
skipped, atomic and repairable publishes (folder and S3), offline mode, unreachable ones.

Real servers only: pytest-httpserver instances on 127.0.0.1 and moto's S3 server.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pytest_httpserver import HTTPServer
from test_registry import build
from test_s3 import bucket, s3_endpoint  # noqa: F401  (fixtures: a moto server, a bucket)
from werkzeug import Response

import brinelite
from brinelite import backends, publishing, registry, s3
from brinelite.errors import (
    AlreadyExistsError,
    DatasetNotFoundError,
    OfflineError,
    RegistryError,
    UnreachableError,
)
from brinelite.names import parse_name

CELLS = parse_name("lab/cells")
DOWN = "http://127.0.0.1:9"  # the discard port: connection refused


def files(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file of a registry folder (what "unchanged" means)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def good(tmp_path) -> Path:
    """A folder registry holding lab/cells@1.0.0."""
    root = tmp_path / "good"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), str(root))
    return root


@pytest.fixture
def servers() -> Iterator[tuple[HTTPServer, HTTPServer]]:
    """Two HTTP servers on 127.0.0.1 (two registry hosts), recording every request."""
    started = [HTTPServer(host="127.0.0.1"), HTTPServer(host="127.0.0.1")]
    for server in started:
        server.start()
    yield started[0], started[1]
    for server in started:
        server.clear()
        server.stop()


def serve_registry(server: HTTPServer, root: Path) -> str:
    """Serve every file of a folder registry; anything else is 404."""
    for name, _ in files(root).items():
        server.expect_request(f"/{name}").respond_with_data((root / name).read_bytes())
    server.no_handler_status_code = 404
    return server.url_for("/").rstrip("/")


def tokens(server: HTTPServer) -> set[str | None]:
    return {request.headers.get("Authorization") for request, _ in server.log}


# -- 11.2: a token belongs to one registry ------------------------------------------------


def test_the_global_token_is_not_sent_to_other_registries(servers, good, monkeypatch):
    a, b = servers
    a.no_handler_status_code = 404  # A holds nothing
    b_url = serve_registry(b, good)
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{a.url_for('/')},{b_url}")
    monkeypatch.setenv("BRINELITE_TOKEN", "s3cr3t")

    assert brinelite.install("lab/cells", quiet=True).ref.full_name == "lab/cells"
    assert a.log and tokens(a) == {None}  # two registries, no host named: nobody gets it
    assert tokens(b) == {None}

    monkeypatch.setenv("BRINELITE_TOKEN_HOST", f"127.0.0.1:{b.port}")
    assert registry.resolve(CELLS).headers == {"Authorization": "Bearer s3cr3t"}
    assert brinelite.install("lab/cells", quiet=True, force=True).ref.version.major == 1
    assert tokens(a) == {None} and "Bearer s3cr3t" in tokens(b)


def test_each_added_registry_gets_its_own_token_only(servers, good, monkeypatch, cli):
    a, b = servers
    a.no_handler_status_code = 404
    b_url = serve_registry(b, good)
    assert cli("registry", "add", "a", a.url_for("/"), "--token-env", "A_TOKEN").code == 0
    assert cli("registry", "add", "b", b_url, "--token-env", "B_TOKEN").code == 0
    monkeypatch.setenv("A_TOKEN", "token-of-a")
    monkeypatch.setenv("B_TOKEN", "token-of-b")
    monkeypatch.setenv("BRINELITE_TOKEN", "global")

    assert brinelite.install("lab/cells", quiet=True).ref.full_name == "lab/cells"
    assert tokens(a) == {"Bearer token-of-a"}
    assert tokens(b) == {"Bearer token-of-b"}  # index and archive


# -- 11.5: malformed registries are skipped, the next one is asked -------------------------

BAD_INDEXES = {
    "versions-list": ({"versions": []}, "has versions [], expected a dict"),
    "no-sha256": ({"versions": {"1.0.0": {"archive": "a.tar.gz", "size": 1}}}, "sha256 missing"),
    "archive-null": ({"versions": {"1.0.0": {"archive": None}}}, "archive missing"),
    "bad-version-key": ({"versions": {"latest": {}}}, 'lists "latest", which is not a semantic'),
    "size-text": (
        {"versions": {"1.0.0": {"archive": "a.tar.gz", "sha256": "a" * 64, "size": "9"}}},
        'size "9", expected a whole number',
    ),
    "sha256-not-hex": (
        {"versions": {"1.0.0": {"archive": "a.tar.gz", "sha256": "z" * 64, "size": 9}}},
        "not 64 hex digits",
    ),
    "archive-url": (
        {"versions": {"1.0.0": {"archive": "http://evil/x.tar.gz", "sha256": "a" * 64, "size": 9}}},
        "must be a path relative to the dataset's folder",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INDEXES))
def test_a_malformed_dataset_index_is_skipped_for_the_next_registry(
    case, tmp_path, good, monkeypatch
):
    bad_fields, reason = BAD_INDEXES[case]
    bad = tmp_path / "bad"
    (bad / "lab" / "cells").mkdir(parents=True)
    index = {"format_version": 1, "name": "lab/cells", **bad_fields}
    (bad / "lab" / "cells" / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{bad},{good}")

    found = registry.resolve(CELLS)
    assert found.registry == str(good)
    assert [s.registry for s in found.skipped] == [str(bad)] and reason in found.skipped[0].reason
    assert brinelite.install("lab/cells", quiet=True).ref.full_name == "lab/cells"


def test_an_archive_url_in_a_folder_registry_is_refused_clearly(tmp_path, good, monkeypatch, cli):
    path = good / "lab" / "cells" / "index.json"
    index = json.loads(path.read_text())
    index["versions"]["1.0.0"]["archive"] = "http://127.0.0.1:9/cells.tar.gz"
    path.write_text(json.dumps(index))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(good))

    result = cli("install", "lab/cells")
    assert result.code == 1 and result.err.count("\n") == 1
    assert "'http://127.0.0.1:9/cells.tar.gz': it must be a path relative" in result.err
    assert "space" not in result.err


def test_a_huge_index_is_refused_without_reading_it_whole(servers, good, monkeypatch):
    a, _ = servers
    pulled = []

    def endless() -> Iterator[bytes]:
        for _ in range(64):  # 64 MiB of blanks, chunked (no Content-Length)
            pulled.append(1)
            yield b" " * (1 << 20)

    a.expect_request("/lab/cells/index.json").respond_with_response(Response(endless()))
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{a.url_for('/')},{good}")

    found = registry.resolve(CELLS)
    assert found.registry == str(good)
    assert "larger than 16 MiB" in found.skipped[0].reason
    assert len(pulled) < 32  # stopped after the 16 MiB cap (+ socket buffers), not 64 MiB


def test_search_skips_a_bad_or_unreachable_registry_with_one_line(tmp_path, good, monkeypatch, cli):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.json").write_text('{"format_version": 1, "datasets": []}')
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{DOWN},{bad},{good}")

    result = cli("search", "cells")
    assert result.code == 0, result.err
    assert "lab/cells  versions 1.0.0" in result.out
    warnings = result.err.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"Warning: registry {DOWN} skipped: ")
    assert "unreachable" in warnings[0]
    assert warnings[1].startswith(f"Warning: registry {bad} skipped: ")
    assert "datasets [], expected a dict" in warnings[1]


def test_a_deeply_nested_index_is_bad_json_not_a_traceback(tmp_path, good, monkeypatch, cli):
    bad = tmp_path / "bad"
    (bad / "lab" / "cells").mkdir(parents=True)
    (bad / "lab" / "cells" / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{bad},{good}")

    found = registry.resolve(CELLS)
    assert found.registry == str(good)
    assert "nests arrays or objects too deeply" in found.skipped[0].reason
    monkeypatch.setenv("BRINELITE_REGISTRY", str(bad))
    result = cli("install", "lab/cells", "-q")
    assert result.code == 1 and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1 and "too deeply" in result.err


# -- 11.6: publish is atomic and repairable ------------------------------------------------


@pytest.mark.parametrize(
    ("broken", "content", "reason"),
    [
        ("index.json", "{not json", "is not valid JSON"),
        (
            "lab/cells/index.json",
            '{"format_version": 1, "name": "lab/cells", "versions": []}',
            "has versions [], expected a dict",
        ),
    ],
)
def test_publish_onto_a_malformed_index_writes_nothing(
    broken, content, reason, tmp_path, good, cli
):
    (good / broken).write_text(content)
    before = files(good)
    archive = build(tmp_path / "new", "lab/cells", "1.1.0", seed=5)

    result = cli("publish", archive, "--registry", good)
    assert result.code == 1 and result.err.count("\n") == 1
    assert reason in result.err and "Nothing was written" in result.err
    assert files(good) == before  # no orphan archive, no index changed


def test_a_publish_cut_between_its_writes_is_completed_by_rerunning_it(tmp_path, good, monkeypatch):
    archive = build(tmp_path / "new", "lab/cells", "1.1.0", seed=5)
    real = backends.FolderStore.put_json
    indexes = {name: (good / name).read_bytes() for name in ("index.json", "lab/cells/index.json")}
    for cut in ("lab/cells/index.json", "index.json"):  # after the archive, after the index

        def failing(self, relative, data, tag, cut=cut):
            if relative == cut:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, relative, data, tag)

        monkeypatch.setattr(backends.FolderStore, "put_json", failing)
        with pytest.raises(OSError):
            publishing.publish(archive, str(good))
        monkeypatch.setattr(backends.FolderStore, "put_json", real)
        published = publishing.publish(archive, str(good))  # the same command again

        index = json.loads((good / "lab" / "cells" / "index.json").read_text())
        top = json.loads((good / "index.json").read_text())
        assert sorted(index["versions"]) == ["1.0.0", "1.1.0"]
        assert index["versions"]["1.1.0"]["sha256"] == published.sha256
        assert top["datasets"]["lab/cells"]["latest"] == "1.1.0"
        other = build(tmp_path / f"other-{len(cut)}", "lab/cells", "1.1.0", seed=6)
        with pytest.raises(AlreadyExistsError):  # still immutable once listed
            publishing.publish(other, str(good))
        for name, content in indexes.items():  # forget 1.1.0 for the second round
            (good / name).write_bytes(content)


def s3_keys(bucket_name: str) -> dict[str, str]:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket_name).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


def test_s3_publish_onto_a_malformed_index_writes_nothing(bucket, tmp_path):  # noqa: F811
    url = f"s3://{bucket}/reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), url)
    s3.client().put_object(Bucket=bucket, Key="reg/index.json", Body=b"[1, 2]")
    before = s3_keys(bucket)

    with pytest.raises(RegistryError, match="holds a JSON list.*Nothing was written"):
        publishing.publish(build(tmp_path / "new", "lab/cells", "1.1.0", seed=5), url)
    assert s3_keys(bucket) == before


class ConcurrentPublisher:
    """Wraps a real client: just before our dataset index is written, another publisher
    writes its own version of that index (what S3 has no lock against)."""

    def __init__(self, client, rival: dict) -> None:
        self.client, self.rival, self.done = client, rival, False

    def __getattr__(self, name):
        return getattr(self.client, name)

    def put_object(self, **kwargs):
        if kwargs["Key"].endswith("cells/index.json") and not self.done:
            self.done = True
            self.client.put_object(
                Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=json.dumps(self.rival).encode()
            )
        return self.client.put_object(**kwargs)


def test_s3_publish_never_overwrites_a_concurrent_change_and_reruns_cleanly(
    bucket,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    url = f"s3://{bucket}/reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), url)
    rival = s3.read_json(f"{url}/lab/cells/index.json")
    rival["versions"]["1.0.1"] = rival["versions"]["1.0.0"] | {"description": "rival"}
    archive = build(tmp_path / "new", "lab/cells", "1.1.0", seed=5)

    wrapped = ConcurrentPublisher(s3.client(), rival)
    monkeypatch.setattr(s3, "client", lambda: wrapped)
    with pytest.raises(RegistryError, match="changed while publishing.*run the same command"):
        publishing.publish(archive, url)
    monkeypatch.undo()
    monkeypatch.setenv("BRINELITE_S3_ENDPOINT_URL", wrapped.client.meta.endpoint_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    publishing.publish(archive, url)  # the archive is there already (same sha256): completed
    index = s3.read_json(f"{url}/lab/cells/index.json")
    assert sorted(index["versions"]) == ["1.0.0", "1.0.1", "1.1.0"]  # the rival's kept
    assert s3.read_json(f"{url}/index.json")["datasets"]["lab/cells"]["latest"] == "1.1.0"


def test_s3_archive_of_other_content_is_not_overwritten(bucket, tmp_path):  # noqa: F811
    url = f"s3://{bucket}/reg"
    key = "reg/lab/cells/cells-1.0.0.tar.gz"
    boto3.client("s3", endpoint_url=s3.client().meta.endpoint_url).put_object(
        Bucket=bucket, Key=key, Body=b"someone else's bytes"
    )
    with pytest.raises(AlreadyExistsError, match="another archive that no index names"):
        publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), url)
    assert s3.client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"someone else's bytes"
    assert s3.read_json(f"{url}/lab/cells/index.json") is None


# -- issue 12: offline, unreachable, registry add ------------------------------------------


def test_offline_mode_never_touches_a_registry(servers, monkeypatch, cli):
    a, _ = servers
    monkeypatch.setenv("BRINELITE_REGISTRY", a.url_for("/"))
    monkeypatch.setenv("BRINELITE_OFFLINE", "1")

    with pytest.raises(OfflineError, match="BRINELITE_OFFLINE"):
        registry.resolve(CELLS)
    with pytest.raises(OfflineError, match="BRINELITE_OFFLINE"):
        registry.search()
    result = cli("search")
    assert result.code == 1 and result.err.count("\n") == 1 and "BRINELITE_OFFLINE" in result.err
    assert a.log == []


def test_not_found_with_a_registry_down_is_unreachable(monkeypatch, good):
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{DOWN},{good}")
    with pytest.raises(UnreachableError, match=f"unreachable: {DOWN}"):
        registry.resolve(parse_name("lab/other"))
    assert registry.resolve(CELLS).skipped[0].unreachable  # found later: just a note
    monkeypatch.setenv("BRINELITE_REGISTRY", str(good))
    with pytest.raises(DatasetNotFoundError):
        registry.resolve(parse_name("lab/other"))


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("htp://data.lab.org/reg", "unknown scheme 'htp://'"),
        ("/no/such/folder", "Registry folder /no/such/folder does not exist"),
        ("https:///reg", "names no host"),
    ],
)
def test_registry_add_refuses_what_would_hold_nothing(url, said, cli, brinelite_home):
    result = cli("registry", "add", "team", url)
    assert result.code == 1 and result.err.count("\n") == 1 and said in result.err
    assert not (brinelite_home / "config" / "registries.json").exists()


def test_http_index_reads_honour_retry_after(servers, good, monkeypatch):
    a, _ = servers
    a.expect_oneshot_request("/lab/cells/index.json").respond_with_response(
        Response("slow down", status=429, headers={"Retry-After": "1"})
    )
    url = serve_registry(a, good)
    monkeypatch.setenv("BRINELITE_REGISTRY", url)

    assert registry.resolve(CELLS).registry == url
    statuses = [response.status_code for request, response in a.log]
    assert statuses == [429, 200]
