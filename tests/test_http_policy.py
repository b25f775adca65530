"""brinelite.http_policy: downloads and registry index reads follow one HTTP policy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from urllib3.response import HTTPResponse

from brinelite import download, http_policy
from brinelite.backends import HttpStore
from brinelite.errors import AuthError
from brinelite.http_policy import DOWNLOADS, INDEXES


def test_downloads_and_index_reads_differ_only_in_how_many_attempts_they_make():
    assert replace(INDEXES, retries=DOWNLOADS.retries, backoff=DOWNLOADS.backoff) == DOWNLOADS
    assert DOWNLOADS.retry_status == {429, 500, 502, 503, 504}


def test_the_wait_doubles_is_capped_and_a_retry_after_is_honoured_up_to_its_cap():
    assert [DOWNLOADS.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 10]
    assert DOWNLOADS.delay(1, retry_after=7) == 7
    assert DOWNLOADS.delay(5, retry_after=1) == 8  # never shorter than the backoff
    assert DOWNLOADS.delay(1, retry_after=3600) == INDEXES.delay(1, retry_after=3600) == 60


def test_index_reads_retry_under_the_policy_with_its_retry_after_cap_kept_across_attempts():
    retry = INDEXES.session(retrying=True).get_adapter("https://reg.example").max_retries
    assert (retry.total, retry.backoff_factor) == (INDEXES.retries, INDEXES.backoff)
    assert set(retry.status_forcelist) == INDEXES.retry_status
    later = retry.increment("GET", "/index.json", HTTPResponse(status=503))
    busy = HTTPResponse(status=503, headers={"Retry-After": "3600"})
    # before: index reads capped a Retry-After at 30 s, downloads at 60 s
    assert later.get_retry_after(busy) == INDEXES.max_retry_after == 60


def test_both_send_the_policy_user_agent(httpserver, tmp_path):
    httpserver.expect_request("/reg/lab/cells/index.json").respond_with_json({})
    httpserver.expect_request("/file.bin").respond_with_data(b"bytes")
    HttpStore(httpserver.url_for("/reg"), None).read_json("lab/cells/index.json")
    download.fetch(httpserver.url_for("/file.bin"), tmp_path / "file.bin")
    agents = {request.headers["User-Agent"] for request, _ in httpserver.log}
    assert agents == {http_policy.HttpPolicy(0, 0).user_agent} == {"brinelite"}


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_gives_the_same_advice_for_a_download_and_an_index(status, httpserver, tmp_path):
    httpserver.expect_request("/reg/lab/cells/index.json").respond_with_data("no", status=status)
    httpserver.expect_request("/file.bin").respond_with_data("no", status=status)
    with pytest.raises(AuthError) as index:
        HttpStore(httpserver.url_for("/reg"), None).read_json("lab/cells/index.json")
    with pytest.raises(AuthError) as archive:
        download.fetch(httpserver.url_for("/file.bin"), tmp_path / "file.bin")
    advice = f"refused access (HTTP {status}); set BRINELITE_TOKEN (and BRINELITE_TOKEN_HOST="
    # before: a download's advice named neither BRINELITE_TOKEN_HOST nor --token-env
    for caught in (index, archive):
        assert advice in str(caught.value) and "--token-env VAR" in str(caught.value)
        assert str(caught.value).endswith(", or add a .netrc entry for localhost.")


def test_a_registry_added_with_its_own_variable_is_told_to_set_that_one(httpserver):
    httpserver.expect_request("/reg/index.json").respond_with_data("no", status=401)
    with pytest.raises(AuthError, match="set TEAM_TOKEN to a valid token, or add a .netrc"):
        HttpStore(httpserver.url_for("/reg"), "TEAM_TOKEN").read_json("index.json")
