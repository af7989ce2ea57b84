"""The baseline for server_throughput.py: a minimal FastAPI app, one POST /v4/chat route that parses
the JSON body and returns a canned ChatResponse of the same shape and size as the local server's
(~1.7 kB), served by uvicorn in one process like ``python -m hl_notebook.server``.

    python bench/_minimal_app.py            # listening socket as uvicorn/asyncio make it (TCP proto)
    python bench/_minimal_app.py --proto0   # bound like hl_notebook.server before 7474105 (proto 0)

Prints ``minimal server at http://127.0.0.1:PORT/v4`` once it accepts connections.
"""
from __future__ import annotations

import argparse
import socket
from typing import Any

import uvicorn
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

_TEXT = "gpt-4o-mini: Summarise item 0 of the catalogue in one sentence. ~ moreover briefly likewise notably"
_MESSAGES = [{"role": "system", "content": "You are terse.", "name": None, "tool_call_id": None, "tool_calls": None,
              "tool_call": None},
             {"role": "user", "content": "Summarise item 0 of the catalogue in one sentence.", "name": None,
              "tool_call_id": None, "tool_calls": None, "tool_call": None}]
CANNED: dict[str, Any] = {
    "project_id": "pr_0y4M5U7HoIgSTCLh7tyDb", "num_samples": 1, "logprobs": None, "suffix": None, "user": None,
    "data": [{"id": "data_K4xDLF7sQFyWcBDkdYK7L", "index": 0, "output": _TEXT, "raw_output": _TEXT,
              "inputs": {"item": 0}, "finish_reason": "stop", "model_config_id": "config_e1Sc1h88bt3eObyyT9GPU",
              "messages": _MESSAGES, "tool_results": [], "tool_calls": None, "tool_call": None,
              "output_message": {"role": "assistant", "content": _TEXT, "name": None, "tool_call_id": None,
                                 "tool_calls": None, "tool_call": None}}],
    "usage": {"prompt_tokens": 12, "generation_tokens": 15, "total_tokens": 27}, "metadata": None,
    "provider_responses": [{"object": "mock.completion", "model": "gpt-4o-mini",
                            "choices": [{"index": 0, "text": _TEXT, "finish_reason": "stop"}]}],
    "provider_request": {"model": "gpt-4o-mini", "messages": _MESSAGES, "n": 1, "temperature": 0.7, "max_tokens": -1},
    "session_id": None, "tool_choice": None,
}

app = FastAPI()


@app.post("/v4/chat")
def chat(body: dict[str, Any] = Body(...)) -> JSONResponse:  # sync, like the real routes (threadpool hop)
    return JSONResponse(CANNED)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto0", action="store_true", help="bind with proto 0 (Nagle stays on)")
    args = parser.parse_args()
    proto = 0 if args.proto0 else socket.IPPROTO_TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"minimal server at http://127.0.0.1:{sock.getsockname()[1]}/v4", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
