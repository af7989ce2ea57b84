"""Retry-After parsing shared by the client and the server's pass-through providers (RFC 9110 §10.2.3)."""
from __future__ import annotations

import email.utils

import pytest

from hl_notebook.wire import parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize("value, expected", [
    ("0", 0.0), ("7", 7.0), ("1.5", 1.5), ("-3", 0.0), (None, None), ("", None), ("soon", None),
    ("nan", None), ("inf", None),
])
def test_delta_seconds(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_http_date_in_the_future_is_the_seconds_until_it():
    assert parse_retry_after(email.utils.formatdate(NOW + 30, usegmt=True), now=NOW) == pytest.approx(30.0)


def test_http_date_in_the_past_means_now():
    assert parse_retry_after(email.utils.formatdate(NOW - 30, usegmt=True), now=NOW) == 0.0


def test_client_honours_an_http_date(monkeypatch):
    """The client used to read only delta-seconds: an HTTP date gave no wait at all."""
    import requests

    from hl_notebook.client import _retry_after

    response = requests.Response()
    response.headers["Retry-After"] = email.utils.formatdate(NOW + 12, usegmt=True)
    monkeypatch.setattr("hl_notebook.wire.time.time", lambda: NOW)
    assert _retry_after(response) == pytest.approx(12.0)
