"""--stream in a real kernel: one live display area per sample receives the tokens, then the areas
are emptied and the DataFrame is the cell's result."""
from __future__ import annotations

import os

from jupyter_client.manager import start_new_kernel


def test_stream_draws_live_areas_then_the_frame(tmp_path):
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, "HL_NOTEBOOK_HOME": str(tmp_path)})
    try:
        client.execute_interactive("%load_ext hl_notebook", timeout=60)
        messages = []
        reply = client.execute_interactive(
            "%%hlchat --model m --temperature 0 --stream -n 2\nuser: one two three four five six",
            output_hook=messages.append, timeout=120)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    kinds = [m["msg_type"] for m in messages]
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    areas = {m["content"]["transient"]["display_id"] for m in shown}
    assert len(areas) == 2  # one per sample
    texts = [m["content"]["data"]["text/plain"] for m in shown]
    assert sorted(t.split("]")[0] for t in texts) == ["[call 0 sample 0", "[call 0 sample 1"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    final_text = {m["content"]["transient"]["display_id"]: m["content"]["data"]["text/plain"] for m in updates}
    assert set(final_text) == areas and set(final_text.values()) == {""}  # emptied at the end
    assert kinds.index("execute_result") > max(i for i, k in enumerate(kinds) if k == "update_display_data")
    result = next(m for m in messages if m["msg_type"] == "execute_result")["content"]["data"]["text/plain"]
    assert "m: one two three four five six" in result and "columns not shown" in result
