"""The response cache is best-effort (issue 10, item 6): a cache file that cannot be used warns once
and then misses and stores nothing, so it never turns a finished run into an error; and the cache
never holds keys."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest

import hl_notebook
from hl_notebook.cache import ResponseCache
from hl_notebook.config import HLSettings
from hl_notebook.secrets import Secret
from hl_notebook.spec import ChatSpec

SPEC = ChatSpec("chat", ({"role": "user", "content": "hello"},), model_config={"model": "m", "provider": "mock"})
RESPONSE = {"project_id": "pr_c", "data": [{"id": "data_c", "index": 0, "output": "hi", "finish_reason": "stop"}],
            "provider_responses": [{"raw": 1}]}


def warnings_from(action) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def assert_unusable_cache_is_a_silent_miss(path: Path) -> None:
    """Opening, reading and writing never raise; one warning in all; nothing is stored or found."""
    cache_box: list[ResponseCache] = []

    def use() -> None:
        cache = ResponseCache(path)
        cache_box.append(cache)
        assert cache.get(SPEC) is None
        cache.put(SPEC, RESPONSE)
        assert cache.get(SPEC) is None
        cache.put(SPEC, RESPONSE)

    [message] = warnings_from(use)
    assert message.startswith(f"hl_notebook: the response cache {path} cannot be used (")
    assert message.endswith("); running without it") and "\n" not in message


def test_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database\n" * 200)
    assert_unusable_cache_is_a_silent_miss(path)


def test_a_cache_whose_folder_is_a_file(tmp_path):
    (tmp_path / "folder").write_text("a file where the cache folder should be")
    assert_unusable_cache_is_a_silent_miss(tmp_path / "folder" / "cache.sqlite")


def test_a_cache_path_that_is_a_folder(tmp_path):
    (tmp_path / "cache.sqlite").mkdir()
    assert_unusable_cache_is_a_silent_miss(tmp_path / "cache.sqlite")


@pytest.fixture
def read_only(tmp_path):
    """A valid, empty cache file that cannot be written (immutable for root, which ignores modes)."""
    path = tmp_path / "ro" / "cache.sqlite"
    ResponseCache(path)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            pytest.skip("root cannot make a read-only file here (no chattr +i)")
        yield path
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        yield path
        path.parent.chmod(0o755)
        path.chmod(0o644)


def test_a_read_only_cache(read_only):
    before = read_only.read_bytes()
    assert_unusable_cache_is_a_silent_miss(read_only)
    assert read_only.read_bytes() == before


def test_a_working_cache_answers_and_warns_nothing(tmp_path):
    def use() -> None:
        cache = ResponseCache(tmp_path / "cache.sqlite")
        assert cache.get(SPEC) is None
        cache.put(SPEC, RESPONSE)
        assert cache.get(SPEC) == {k: v for k, v in RESPONSE.items() if k != "provider_responses"}
    assert warnings_from(use) == []


def test_the_cache_never_holds_keys(tmp_path):
    provider_key, other_key = f"sk-cache{uuid.uuid4().hex}", f"cachekey-{uuid.uuid4().hex}"
    Secret(other_key)  # a key the notebook knows about (remembered for redaction)
    response = {**RESPONSE, "metadata": {"api_key": "plain-" + uuid.uuid4().hex, "note": f"uses {other_key}"},
                "provider_request": {"headers": {"Authorization": f"Bearer {provider_key}"}},
                "data": [{**RESPONSE["data"][0], "messages": [{"role": "user", "content": f"key {provider_key}"}],
                          "provider_api_keys": {"openai": provider_key}}]}
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(path)
    cache.put(SPEC, response)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite"))
    for key in (provider_key, other_key, response["metadata"]["api_key"]):
        assert key.encode() not in stored
    hit = cache.get(SPEC)
    assert hit["data"][0]["output"] == "hi" and hit["metadata"]["api_key"] == "***"
    assert hit["data"][0]["messages"][0]["content"] == "key ***"
    assert sqlite3.connect(path).execute("SELECT count(*) FROM responses").fetchone() == (1,)


def test_a_sweep_with_an_unusable_cache_still_returns_its_frame(server, point, tmp_path):
    point(server)
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"not sqlite at all\n" * 100)
    HLSettings.instance().cache_path = str(path)
    frames = []
    messages = warnings_from(lambda: frames.append(hl_notebook.sweep("user: hello", model="m", temperature=0,
                                                                     cache=True, progress=False)))
    assert len(messages) == 1 and "cannot be used" in messages[0]
    [frame] = frames
    assert list(frame["output"]) == ["m: hello"] and frame["error"].isna().all()
