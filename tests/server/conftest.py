"""Fixtures of the server tests: a fake OpenAI upstream for pass-through calls through the server."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.fakes import openai_server, serve
from tests.server.helpers import FAKE_PROVIDER_KEY


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[str]:
    """Base URL (``…/v1``) of a fake OpenAI that accepts only FAKE_PROVIDER_KEY and echoes a wrong key
    in its 401 message."""
    with serve(openai_server.create_app(FAKE_PROVIDER_KEY)) as url:
        yield url + "/v1"
