"""brinelite.settings: every environment variable, read when needed, malformed ones refused."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from brinelite import cache, config, settings
from brinelite.errors import ArchiveError, BuildError


def test_folders_are_read_at_each_call_with_home_expanded(monkeypatch):
    monkeypatch.setenv("BRINELITE_HOME", "~/elsewhere")
    monkeypatch.setenv("BRINELITE_CONFIG_DIR", "~/conf")
    assert cache.home() == Path.home() / "elsewhere"
    assert config.config_dir() == Path.home() / "conf"  # before: a folder literally named "~"
    monkeypatch.delenv("BRINELITE_HOME")
    monkeypatch.setenv("BRINELITE_CONFIG_DIR", "  ")
    assert cache.home() == Path(platformdirs.user_cache_dir("brinelite"))
    assert config.config_dir() == Path(platformdirs.user_config_dir("brinelite"))


def test_listed_registries_tokens_and_the_s3_endpoint(monkeypatch):
    monkeypatch.setenv("BRINELITE_REGISTRY", " /a, ,https://b/reg ,")
    assert settings.listed_registries() == ["/a", "https://b/reg"]
    monkeypatch.setenv("TEAM_TOKEN", " s3cret \n")
    assert settings.token("TEAM_TOKEN") == "s3cret"
    assert settings.token("NO_SUCH_TOKEN_VARIABLE") is None
    monkeypatch.delenv("BRINELITE_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert settings.s3_endpoint() == "http://127.0.0.1:9000"
    monkeypatch.setenv("BRINELITE_S3_ENDPOINT_URL", "http://127.0.0.1:9001")
    assert settings.s3_endpoint() == "http://127.0.0.1:9001"


@pytest.mark.parametrize(
    ("variable", "read", "bad", "error"),
    [
        ("SOURCE_DATE_EPOCH", settings.source_date_epoch, ("soon", "-1", "9" * 30), BuildError),
        (
            "BRINELITE_MAX_EXTRACT_BYTES",
            settings.max_extract_bytes,
            ("0", "1e9", "9" * 30),
            ArchiveError,
        ),
    ],
)
def test_malformed_numbers_are_refused_with_a_typed_error(variable, read, bad, error, monkeypatch):
    monkeypatch.delenv(variable, raising=False)
    assert read() is None
    monkeypatch.setenv(variable, "1700000000")
    assert read() == 1_700_000_000
    for value in bad:
        monkeypatch.setenv(variable, value)
        with pytest.raises(error, match=variable):
            read()
