"""The depth-bounded JSON loader (workers/verification/safe_json.py) and the API's parser built on
it, each on its own: the gunicorn tests see only the first layer that refuses a nested body."""

import json

import pytest

from tests.api.helpers import assert_error
from workers.verification import safe_json

DEEP = "[" * 100_000 + "]" * 100_000


def test_depth_ignores_brackets_inside_strings_and_escapes():
    assert safe_json.nesting_depth('["[[[[", {"a": [1]}]') == 3
    # an escaped backslash ends the string; an escaped quote does not
    assert safe_json.nesting_depth(r'["\\", [[]]]') == 3
    assert safe_json.nesting_depth(r'["\"[[[", 1]') == 1
    assert safe_json.nesting_depth("1") == 0


def test_brackets_hidden_in_a_misread_string_still_count_in_utf16():
    """json.loads accepts UTF-16 bytes. Scanning them raw would read the second byte of an
    escaped quote as a closing quote and hide everything after it inside a "string"."""
    text = '["\\"", ' + "[" * 100 + "]" * 100 + "]"
    assert safe_json.nesting_depth(text.encode("utf-16")) == 101
    with pytest.raises(safe_json.JsonTooDeep):
        safe_json.loads(text.encode("utf-16"))


@pytest.mark.parametrize("payload", [DEEP, DEEP.encode(), '{"a":' * 40_000 + "0" + "}" * 40_000])
def test_deep_documents_are_a_value_error_not_a_recursion(payload):
    with pytest.raises(ValueError, match="nested"):
        safe_json.loads(payload)


def test_documents_within_the_bound_parse_as_json_does():
    doc = {"y": list(range(100)), "rows": [{"index": 3, "values": [1, 2], "proof": ["ab"]}]}
    nested = json.loads("[" * 64 + "]" * 64)
    assert safe_json.loads(json.dumps(doc)) == doc
    assert safe_json.loads(json.dumps(nested)) == nested
    with pytest.raises(safe_json.JsonTooDeep):
        safe_json.loads("[" * 65 + "]" * 65)


def test_keyword_arguments_reach_the_decoder():
    def refuse(name):
        raise ValueError(name)

    with pytest.raises(ValueError, match="NaN"):
        safe_json.loads("[NaN]", parse_constant=refuse)


@pytest.mark.django_db
def test_api_parser_refuses_a_nested_body_on_its_own(anon, settings):
    """With the middleware that refuses nested bodies taken out, DRF's parser (the project's
    SafeJSONParser) still answers 400: the stock parser raised RecursionError, a 500."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("BodyDepthMiddleware")]
    response = anon.post("/api/v1/auth/signup", DEEP, content_type="application/json")
    assert_error(response, 400, "malformed_request")
