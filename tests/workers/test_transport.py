"""The gzip answer body: the agent sends it, the server's body reader inflates it with a cap."""

import gzip
import json
import zlib

import pytest
from django.test import RequestFactory
from rest_framework.request import Request

from marketplace.benchmarks.apis import _read_body
from workers.agent.client import GZIP_MAGIC
from workers.agent.runner import JobRunner


def _request(body, encoding=None):
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    raw = RequestFactory().generic("POST", "/x", body, content_type="application/json", **headers)
    return Request(raw)


def test_agent_answer_body_is_gzip_of_compact_json():
    answer = {"y": [1, -2, 3], "rows": [{"index": 0, "values": [1, 2], "proof": []}]}
    body = JobRunner(api=None).answer_body(answer)
    assert body[:2] == GZIP_MAGIC
    assert json.loads(gzip.decompress(body)) == answer


@pytest.mark.parametrize("encoding", [None, "gzip", "GZIP "])
def test_gzip_body_is_inflated_with_or_without_the_header(encoding):
    text = json.dumps({"y": list(range(1000))}).encode()
    assert _read_body(_request(gzip.compress(text), encoding), 1 << 20) == text


def test_plain_body_is_unchanged():
    assert _read_body(_request(b'{"root": "ab"}'), 1024) == b'{"root": "ab"}'


def test_decompression_bomb_is_cut_at_cap_plus_one():
    cap = 4096
    bomb = gzip.compress(b"0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 1 << 17
    out = _read_body(_request(bomb, "gzip"), 1 << 20)
    assert len(out) == (1 << 20) + 1  # over the cap: the services reject it as over-limit
    out = _read_body(_request(bomb[: cap + 1], "gzip"), cap)
    assert len(out) <= cap + 1


@pytest.mark.parametrize(
    "body, encoding",
    [
        (GZIP_MAGIC + b"not really gzip", None),
        (b"{}", "br"),
        (zlib.compress(b"{}"), "gzip"),
    ],
)
def test_corrupt_or_unsupported_encoding_reads_as_an_empty_non_json_body(body, encoding):
    assert _read_body(_request(body, encoding), 1024) == b""


def test_over_limit_inflated_body_is_a_malformed_payload():
    from marketplace.benchmarks.services import _Malformed, _parse_json

    out = _read_body(_request(gzip.compress(b" " * 10_000), "gzip"), 1024)
    with pytest.raises(_Malformed, match="exceeds"):
        _parse_json(out, limit=1024)
