"""JSON parsing with a bound on nesting depth, for every body that crosses the network: API
requests, the agent's commitments and answers, and the server's replies to the agent.

Why: web3 (through py_ecc) raises Python's recursion limit to 100,000 at import, and the C JSON
decoder recurses once per nesting level, so a ~200 KB body of `[[[[...` overflows the thread's
C stack and the whole process dies with SIGSEGV instead of raising RecursionError. Counting the
depth first, with a linear scan that never recurses, turns such a body into an ordinary
ValueError whatever the recursion limit is.

Plain Python, no Django: the provider agent uses it too.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# Far above any document the platform exchanges (an answer is 3 levels deep, a hardware report
# 4), far below where the decoder's recursion could hurt.
MAX_DEPTH = 64

# A complete JSON string, escapes included ("\"" and "\\" do not end it). Unrolled so that the
# regex engine loops rather than backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonTooDeep(ValueError):
    """A ValueError, so every caller that already refuses malformed JSON refuses this too."""


def _as_text(text: bytes | bytearray | str) -> str:
    """Bytes decoded as json.loads decodes them (UTF-8, -16 or -32, detected): scanning raw
    UTF-16 bytes would misread an escaped quote and could hide brackets from the count."""
    if isinstance(text, str):
        return text
    return bytes(text).decode(json.detect_encoding(text), "surrogatepass")


def nesting_depth(text: bytes | bytearray | str) -> int:
    """The deepest nesting of arrays and objects in `text`, brackets inside strings ignored.

    Linear and iterative: strings are cut out by one regex pass, everything but brackets is
    deleted by bytes.translate, and the depth is the largest running sum of +1/-1 steps, all
    at C speed. Malformed input (an unterminated string, unbalanced brackets) gets a figure that
    is never lower than what the decoder would recurse to, which is all a bound needs."""
    data = _as_text(text).encode("utf-8", "surrogatepass")
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(text: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> None:
    """Raises JsonTooDeep if `text` nests deeper than max_depth (UnicodeDecodeError, also a
    ValueError, if bytes are not text)."""
    text = _as_text(text)
    # A document with few opening brackets cannot nest deeply: the common case costs two counts.
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JsonTooDeep(f"JSON nested {depth} levels deep; at most {max_depth} are accepted")


def loads(text: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """json.loads, after checking the nesting depth. Raises ValueError (JsonTooDeep,
    json.JSONDecodeError or UnicodeDecodeError) for anything it will not parse; RecursionError
    cannot escape."""
    text = _as_text(text)
    check_depth(text, max_depth=max_depth)
    try:
        return json.loads(text, **kwargs)
    except RecursionError as exc:  # only if a caller raised max_depth past the recursion limit
        raise JsonTooDeep(str(exc)) from None
