"""Folder registries: layout, newest/pinned resolution, immutability, concurrency, config, search."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import make_pairs

import brinelite
from brinelite import config, publishing, registry
from brinelite.errors import (
    AlreadyExistsError,
    DatasetNotFoundError,
    InvalidNameError,
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
    outcomes = [proc.communicate(timeout=120) for proc in procs]
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
