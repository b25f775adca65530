"""Registries: layout, newest/pinned resolution, immutability, concurrency, config, search;
and registries that cannot hurt you (tokens, malformed or huge indexes, atomic publishes on
folders and S3, offline, unreachable ones)."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from conftest import HANG_GUARD, make_pairs
from pytest_httpserver import HTTPServer
from werkzeug import Response

import brinelite
from brinelite import backends, config, publishing, registry, s3
from brinelite.errors import (
    AlreadyExistsError,
    DatasetNotFoundError,
    InvalidNameError,
    OfflineError,
    RegistryError,
    UnreachableError,
)
from brinelite.names import parse_name


def build(tmp_path: Path, name: str, version: str, seed: int = 0) -> Path:
    """A small dataset archive of ``name@version`` (``seed`` varies its images)."""
    src = make_pairs(tmp_path / f"src-{version}-{seed}", count=3, size=(24, 32), seed=seed)
    out = tmp_path / f"{name.replace('/', '-')}-{version}.tar.gz"
    return brinelite.build(src, name, version, out).archive


def test_publish_writes_the_documented_layout(tmp_path):
    reg = tmp_path / "reg"
    archive = build(tmp_path, "lab/cells", "1.0.0")
    published = publishing.publish(archive, str(reg))

    index = json.loads((reg / "lab" / "cells" / "index.json").read_text())
    entry = index["versions"]["1.0.0"]
    assert index["format_version"] == 1 and index["name"] == "lab/cells"
    assert entry["archive"] == "cells-1.0.0.tar.gz" and entry["rows"] == 3
    assert entry["size"] == archive.stat().st_size == published.size
    assert entry["sha256"] == published.sha256
    assert [c["name"] for c in entry["columns"]] == ["image", "mask"] and entry["created"]
    assert (reg / "lab" / "cells" / "cells-1.0.0.tar.gz").read_bytes() == archive.read_bytes()
    top = json.loads((reg / "index.json").read_text())
    assert top["format_version"] == 1
    assert top["datasets"]["lab/cells"]["latest"] == "1.0.0"
    assert not list(reg.rglob(".*.tmp")) and not list(reg.rglob("*.tar.gz.*"))


def test_newest_version_is_chosen_and_a_pin_is_honoured(tmp_path, monkeypatch):
    reg = tmp_path / "reg"
    for version in ("1.2.0", "1.10.0", "1.9.3"):  # 1.10.0 is newest, though not in text order
        publishing.publish(build(tmp_path, "lab/cells", version), str(reg))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(reg))

    assert str(registry.resolve(parse_name("lab/cells")).ref) == "lab/cells@1.10.0"
    pinned = registry.resolve(parse_name("lab/cells@1.2.0"))
    assert pinned.location == str(reg / "lab" / "cells" / "cells-1.2.0.tar.gz")
    assert brinelite.install("lab/cells@1.9.3", quiet=True).ref.version.minor == 9
    assert brinelite.load_dataset("lab/cells").version == "1.9.3"
    assert str(brinelite.install("lab/cells", quiet=True).ref) == "lab/cells@1.10.0"
    listed = registry.search("cells").listings
    assert listed[0].versions == ["1.2.0", "1.9.3", "1.10.0"] and listed[0].latest == "1.10.0"


def test_registries_are_asked_in_order(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0", seed=1), str(first))
    publishing.publish(build(tmp_path, "lab/cells", "2.0.0", seed=2), str(second))
    monkeypatch.setenv("BRINELITE_REGISTRY", f"{first}, {second}")

    assert registry.resolve(parse_name("lab/cells")).registry == str(first)
    assert registry.resolve(parse_name("lab/cells@2.0.0")).registry == str(second)
    installed = brinelite.install("lab/cells@2.0.0", quiet=True)
    record = json.loads((installed.path / "install.json").read_text())
    assert record["registry"] == str(second) and record["sha256"] == installed.sha256


def test_publishing_an_existing_version_is_refused(tmp_path, cli):
    reg = tmp_path / "reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0", seed=1), str(reg))
    before = (reg / "lab" / "cells" / "cells-1.0.0.tar.gz").read_bytes()
    other = build(tmp_path / "other", "lab/cells", "1.0.0", seed=2)

    with pytest.raises(AlreadyExistsError, match="versions are immutable"):
        publishing.publish(other, str(reg))
    result = cli("publish", other, "--registry", f"file://{reg}")
    assert result.code == 1 and "already published" in result.err
    assert (reg / "lab" / "cells" / "cells-1.0.0.tar.gz").read_bytes() == before


def test_concurrent_publishes_of_different_versions_all_land(tmp_path):
    reg = tmp_path / "reg"
    archives = [build(tmp_path, "lab/cells", f"1.{minor}.0", seed=minor) for minor in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "brinelite", "publish", str(a), "--registry", str(reg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in archives
    ]
    outcomes = [proc.communicate(timeout=HANG_GUARD) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 3, outcomes

    index = json.loads((reg / "lab" / "cells" / "index.json").read_text())
    assert sorted(index["versions"]) == [f"1.{minor}.0" for minor in range(3)]
    top = json.loads((reg / "index.json").read_text())
    assert top["datasets"]["lab/cells"]["latest"] == "1.2.0"
    assert len(top["datasets"]["lab/cells"]["versions"]) == 3
    for archive in archives:
        version = archive.name.removeprefix("lab-cells-").removesuffix(".tar.gz")
        published = reg / "lab" / "cells" / f"cells-{version}.tar.gz"
        assert published.read_bytes() == archive.read_bytes()


def test_publish_an_installed_dataset_or_folder(tmp_path, pairs_src, monkeypatch, cli):
    reg = tmp_path / "reg"
    brinelite.install(str(pairs_src), name="lab/pairs@2.0.0", quiet=True)
    result = cli("publish", "lab/pairs", "--registry", reg)
    assert result.code == 0, result.err
    assert f"Published lab/pairs@2.0.0 to {reg}" in result.out
    assert (
        f"Teammates install it with: BRINELITE_REGISTRY={reg} brinelite install lab/pairs@2.0.0"
        in result.out
    )

    monkeypatch.setenv("BRINELITE_HOME", str(tmp_path / "teammate"))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(reg))
    installed = brinelite.install("lab/pairs", quiet=True)
    assert len(brinelite.load_dataset("lab/pairs")) == 8
    # the published archive must not carry the publisher's install record
    assert json.loads((installed.path / "install.json").read_text())["registry"] == str(reg)
    assert cli("publish", tmp_path / "missing", "--registry", reg).code == 1


def test_build_publish_shortcut(tmp_path, pairs_src, cli):
    reg = tmp_path / "reg"
    out = tmp_path / "a.tar.gz"
    result = cli("build", pairs_src, "--name", "lab/pairs", "--out", out, "--publish", reg, "-q")
    assert result.code == 0, result.err
    assert "Published lab/pairs@1.0.0" in result.out
    assert (reg / "lab" / "pairs" / "pairs-1.0.0.tar.gz").read_bytes() == out.read_bytes()


def test_unknown_names_say_where_they_looked_and_suggest(tmp_path, monkeypatch, cli):
    reg = tmp_path / "reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), str(reg))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(reg))

    result = cli("install", "lab/cels")
    assert result.code == 1 and result.err.count("\n") == 1
    assert str(reg) in result.err and str(registry.DEMO_REGISTRY) in result.err
    assert "Did you mean lab/cells?" in result.err
    with pytest.raises(DatasetNotFoundError, match=r"lab/cells@3\.0\.0 was not found"):
        registry.resolve(parse_name("lab/cells@3.0.0"))


def test_an_index_pointing_outside_its_folder_is_refused(tmp_path, monkeypatch):
    reg = tmp_path / "reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), str(reg))
    index_path = reg / "lab" / "cells" / "index.json"
    index = json.loads(index_path.read_text())
    index["versions"]["1.0.0"]["archive"] = "../../../secret.tar.gz"
    index_path.write_text(json.dumps(index))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(reg))
    # the registry is skipped as invalid (not trusted for any version), naming the path
    with pytest.raises(DatasetNotFoundError, match=r"unsafe archive path '\.\./\.\./\.\./secret"):
        registry.resolve(parse_name("lab/cells"))


def test_registry_add_list_remove_stores_the_variable_not_the_token(
    tmp_path, monkeypatch, cli, brinelite_home
):
    reg = tmp_path / "reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), str(reg))
    monkeypatch.setenv("TEAM_TOKEN", "s3cret-value")

    added = cli("registry", "add", "team", str(reg), "--token-env", "TEAM_TOKEN")
    assert added.code == 0, added.err
    stored = (brinelite_home / "config" / config.CONFIG_FILE).read_text()
    assert "TEAM_TOKEN" in stored and "s3cret-value" not in stored
    monkeypatch.setenv("BRINELITE_REGISTRY", "http://127.0.0.1:9/first")
    listed = cli("registry", "list").out.splitlines()
    assert listed == ["http://127.0.0.1:9/first", f"team  {reg}", f"demo  {registry.DEMO_REGISTRY}"]
    monkeypatch.delenv("BRINELITE_REGISTRY")

    assert brinelite.install("lab/cells", quiet=True).ref.full_name == "lab/cells"
    search = cli("search", "lab/")
    assert search.code == 0 and "lab/cells  versions 1.0.0  3 rows" in search.out
    assert "demo/membrane" not in search.out
    assert cli("registry", "remove", "team").code == 0
    assert [entry.name for entry in registry.registries()] == ["demo"]
    removed_again = cli("registry", "remove", "team")
    assert removed_again.code == 1 and "No registry is called 'team'" in removed_again.err


def test_registry_adds_at_the_same_moment_all_land_in_one_whole_file(tmp_path, brinelite_home):
    # Before: every save wrote the same fixed temporary name, so two saves at once renamed
    # each other's file away (FileNotFoundError) or left a mix; and each add read the list
    # before the others saved, so adds were lost.
    folder = tmp_path / "reg"
    folder.mkdir()
    writers, each = 6, 8
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def adds(writer: int) -> None:
        start.wait()
        try:
            for k in range(each):
                config.add(f"r{writer}-{k}", str(folder))
        except BaseException as exc:  # noqa: BLE001 - collected and shown by the assert
            failures.append(exc)

    threads = [threading.Thread(target=adds, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    saved = json.loads((brinelite_home / "config" / config.CONFIG_FILE).read_text())
    names = {entry["name"] for entry in saved["registries"]}
    assert names == {f"r{w}-{k}" for w in range(writers) for k in range(each)}
    left = sorted(p.name for p in (brinelite_home / "config").iterdir())
    assert left == [f".{config.CONFIG_FILE}.lock", config.CONFIG_FILE]  # no temporary files


def test_bad_names_are_refused_before_any_registry_is_asked():
    with pytest.raises(InvalidNameError):
        registry.resolve(parse_name("Lab/Cells"))


def test_demo_dataset_installs_offline_with_no_registry_configured(cli, monkeypatch):
    # An unreachable registry first: it is skipped, the packaged demo registry answers.
    monkeypatch.setenv("BRINELITE_REGISTRY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    result = cli("install", "demo/membrane", "-q")
    assert result.code == 0, result.err
    assert "demo/membrane@1.0.0 was installed" in result.out
    index = json.loads((registry.DEMO_REGISTRY / "demo" / "membrane" / "index.json").read_text())
    assert f"sha256 {index['versions']['1.0.0']['sha256']}" in result.out
    dataset = brinelite.load_dataset("demo/membrane")
    assert len(dataset) == index["versions"]["1.0.0"]["rows"]
    monkeypatch.delenv("BRINELITE_REGISTRY")
    assert [item.name for item in registry.search("membrane").listings] == ["demo/membrane"]


def test_an_index_of_an_unknown_format_is_not_used(tmp_path, monkeypatch):
    reg = tmp_path / "reg"
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), str(reg))
    index_path = reg / "lab" / "cells" / "index.json"
    index_path.write_text(json.dumps(json.loads(index_path.read_text()) | {"format_version": 2}))
    monkeypatch.setenv("BRINELITE_REGISTRY", str(reg))
    with pytest.raises(DatasetNotFoundError, match="index format 2.*Upgrade brinelite"):
        registry.resolve(parse_name("lab/cells"))


# -- registries that cannot hurt you: tokens kept to their host, malformed or huge indexes
# skipped, atomic and repairable publishes (folder and S3), offline mode, unreachable ones.
# Real servers only: pytest-httpserver instances on 127.0.0.1 and moto's S3 server.


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


def test_s3_publish_onto_a_malformed_index_writes_nothing(bucket, tmp_path):
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
    bucket,
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


def test_s3_archive_of_other_content_is_not_overwritten(bucket, tmp_path):
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
