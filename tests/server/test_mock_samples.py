"""The mock's sampled words are a documented contract (``providers/mock.py``): any faster way of drawing
them must give exactly the words of the reference below (the implementation up to issue 15)."""
from __future__ import annotations

import hashlib
import json
import random

import pytest

from hl_notebook.server.providers.base import ProviderCall
from hl_notebook.server.providers.mock import VOCABULARY, MockProvider


def reference_words(messages, model, temperature, top_p, seed, index) -> list[str]:
    key = json.dumps([messages, model, temperature, top_p, seed, index], sort_keys=True, default=str)
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    return [rng.choice(VOCABULARY) for _ in range(1 + round(4 * min(temperature, 2.0)))]


CASES = [(t, top_p, seed) for t in (0.01, 0.3, 0.7, 1, 1.5, 2, 7.5) for top_p in (None, 0.9) for seed in (None, 0, 42)]


@pytest.mark.parametrize("temperature, top_p, seed", CASES)
def test_sampled_words_are_the_reference_words(temperature, top_p, seed) -> None:
    provider = MockProvider()
    for item in range(8):
        messages = [{"role": "system", "content": "Be terse."},
                    {"role": "user", "content": f"Summarise item {item} ✓ {{x}}", "name": None}]
        config = {"model": "m-1", "temperature": temperature, "top_p": top_p, "seed": seed}
        call = ProviderCall(config=config, messages=messages, num_samples=3, api_keys={}, user=None,
                            tool_choice=None, response_format=None)
        for generation in provider.complete(call).generations:
            words = generation.text.partition(" ~ ")[2].split(" ")
            assert words == reference_words(messages, "m-1", float(temperature), top_p, seed, generation.index)
