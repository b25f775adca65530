"""S3 registries against a real S3-compatible server (moto's standalone server on 127.0.0.1)."""

from __future__ import annotations

import sys

import pytest
from test_registry import build
from test_sharing import publish_two_versions, teammate_b_installs

from brinelite import download, publishing, s3
from brinelite.errors import AlreadyExistsError, IntegrityError, OfflineError, RegistryError


def test_publish_to_s3_and_install_from_it(bucket, tmp_path, cli, monkeypatch):
    url = f"s3://{bucket}/registry"
    expected = publish_two_versions(cli, tmp_path, url)
    top = s3.read_json(f"{url}/index.json")
    assert top["datasets"]["team/cells"]["versions"] == ["1.0.0", "1.1.0"]
    teammate_b_installs(cli, monkeypatch, tmp_path / "b-home", url, expected)


def test_publish_prints_the_s3_url_and_refuses_overwrites(bucket, tmp_path, cli):
    archive = build(tmp_path, "lab/cells", "1.0.0")
    result = cli("publish", archive, "--registry", f"s3://{bucket}/reg/")
    assert result.code == 0, result.err
    assert f"BRINELITE_REGISTRY=s3://{bucket}/reg brinelite install lab/cells@1.0.0" in result.out
    with pytest.raises(AlreadyExistsError):
        publishing.publish(
            build(tmp_path / "b", "lab/cells", "1.0.0", seed=3), f"s3://{bucket}/reg"
        )


def test_the_index_sha256_is_checked_before_extraction(bucket, tmp_path):
    publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), f"s3://{bucket}/reg")
    location = f"s3://{bucket}/reg/lab/cells/cells-1.0.0.tar.gz"
    dest = tmp_path / "download.tar.gz"
    with pytest.raises(IntegrityError, match="expected 00"):
        download.fetch(location, dest, sha256="00" * 32)
    assert not dest.exists() and not list(tmp_path.glob("download*"))
    assert s3.read_json(f"s3://{bucket}/reg/lab/cells/index.json")["name"] == "lab/cells"
    assert s3.read_json(f"s3://{bucket}/reg/no/such/index.json") is None


def test_missing_boto3_gives_one_line_telling_what_to_install(monkeypatch, cli):
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(RegistryError, match=r"pip install 'brinelite\[s3\]'"):
        s3.client()
    monkeypatch.setenv("BRINELITE_REGISTRY", "s3://bucket/x")
    result = cli("search")
    assert result.code == 1 and result.err.count("\n") == 1 and "brinelite[s3]" in result.err


@pytest.mark.parametrize("missing", [["boto3"], ["boto3", "botocore", "botocore.exceptions"]])
def test_every_s3_call_checks_for_boto3_before_botocore(monkeypatch, missing):
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)
    for call in (
        lambda: s3.read_json("s3://bucket/reg/index.json"),
        lambda: s3.put_json("s3://bucket/reg/index.json", {}, None),
        lambda: s3.S3Transport().open("s3://bucket/a.tar.gz", 0, None),
    ):
        with pytest.raises(RegistryError, match=r"pip install 'brinelite\[s3\]'"):
            call()


class CutFirstBody:
    """Wraps a real client: the first object body breaks after 1000 bytes; records Ranges."""

    def __init__(self, client) -> None:
        self.client, self.ranges = client, []

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get_object(self, **kwargs):
        from botocore.exceptions import IncompleteReadError

        self.ranges.append(kwargs["Range"])
        answer = self.client.get_object(**kwargs)
        if len(self.ranges) > 1:
            return answer
        body = answer["Body"]

        class Cut:
            def iter_chunks(self, size):
                yield body.read(1000)
                raise IncompleteReadError(actual_bytes=1000, expected_bytes=-1)

        return {**answer, "Body": Cut()}


def test_s3_download_resumes_with_range_after_a_cut(bucket, tmp_path, monkeypatch):
    published = publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), f"s3://{bucket}/reg")
    wrapped = CutFirstBody(s3.client())
    monkeypatch.setattr(s3, "client", lambda: wrapped)
    dest = tmp_path / "resumed.tar.gz"
    result = download.fetch(published.location, dest, sha256=published.sha256, backoff=0.01)
    assert wrapped.ranges == ["bytes=0-", "bytes=1000-"]
    assert dest.stat().st_size == published.size == result.size
    assert result.sha256 == published.sha256


def test_s3_download_refuses_offline(bucket, tmp_path, monkeypatch):
    published = publishing.publish(build(tmp_path, "lab/cells", "1.0.0"), f"s3://{bucket}/reg")
    monkeypatch.setenv("BRINELITE_OFFLINE", "1")
    with pytest.raises(OfflineError, match="BRINELITE_OFFLINE"):
        download.fetch(published.location, tmp_path / "x.tar.gz")
    assert list(tmp_path.glob("x.tar.gz*")) == []
