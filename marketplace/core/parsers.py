"""The API's one body parser: DRF's JSON parser with a bound on nesting depth."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json as drf_json

from workers.verification import safe_json


class SafeJSONParser(JSONParser):
    """A deeply nested body is a 400, never a decoder recursing until the worker's stack
    overflows (workers/verification/safe_json.py says why that kills the process rather than
    raising). DRF hands JSON parsers request.body, which Django has already capped at
    DATA_UPLOAD_MAX_MEMORY_SIZE."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
            parse_constant = drf_json.strict_constant if self.strict else None
            return safe_json.loads(text, parse_constant=parse_constant)
        except ValueError as exc:  # JSONDecodeError, JsonTooDeep, UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from None
