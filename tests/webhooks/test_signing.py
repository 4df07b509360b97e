"""The reference verifier refuses whatever a forger or a replayer could send, without raising."""

import time

import pytest

from marketplace.webhooks import signing

SECRET = "whsec_test-secret"
BODY = b'{"id":"order:1:active"}'


def _header(t=None, secrets=(SECRET,)):
    return signing.header_value(secrets=list(secrets), timestamp=t or int(time.time()), body=BODY)


def test_a_fresh_signature_verifies():
    assert signing.verify(secret=SECRET, header=_header(), body=BODY)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "t=abc,v1=00",
        "v1=" + "0" * 64,  # no time
        f"t={int(time.time())}",  # no signature
        f"t={int(time.time())},v1=" + "0" * 64,  # a guess
        f"t=1,t={int(time.time())}," + _header().split(",", 1)[1],  # two times: ambiguous
    ],
)
def test_malformed_or_forged_headers_are_refused(header):
    assert not signing.verify(secret=SECRET, header=header, body=BODY)


def test_an_old_or_future_timestamp_is_refused_even_when_signed():
    now = time.time()
    assert not signing.verify(secret=SECRET, header=_header(int(now) - 301), body=BODY, now=now)
    assert not signing.verify(secret=SECRET, header=_header(int(now) + 301), body=BODY, now=now)
    assert signing.verify(secret=SECRET, header=_header(int(now) - 299), body=BODY, now=now)


def test_moving_the_timestamp_breaks_the_signature():
    """The time is inside the MAC: a captured request cannot be refreshed to pass the window."""
    old = int(time.time()) - 3600
    signature = _header(old).split(",", 1)[1]
    assert not signing.verify(secret=SECRET, header=f"t={int(time.time())},{signature}", body=BODY)
