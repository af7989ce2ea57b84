"""The baseline for server_throughput.py: a minimal FastAPI app, one POST /v4/chat route that parses
the JSON body and returns a canned ChatResponse of the same shape and size as the local server's
(~1.7 kB), served by uvicorn in one process like ``python -m hl_notebook.server``.

    python bench/_minimal_app.py            # listening socket as uvicorn/asyncio make it (TCP proto)
    python bench/_minimal_app.py --proto0   # bound like hl_notebook.server before 7474105 (proto 0)
    python bench/_minimal_app.py --latency-ms 50   # each answer after an awaited 50 ms (async route)

With ``--latency-ms`` it is sweep_walltime.py's near-free server (``--server minimal``): the same
simulated latency as ``--mock-latency-ms``, and nothing else (no store, no key handling), so a
sweep against it measures the client alone.

Prints ``minimal server at http://127.0.0.1:PORT/v4`` once it accepts connections.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
from typing import Any

import uvicorn
from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response

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


def answer_after(latency_ms: float) -> None:
    """Replace the route: read the body, await ``latency_ms``, answer the canned body (encoded once)."""
    encoded = json.dumps(CANNED).encode()
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", "") != "/v4/chat"]

    @app.post("/v4/chat")
    async def chat_after(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(latency_ms / 1000)
        return Response(encoded, media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto0", action="store_true", help="bind with proto 0 (Nagle stays on)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="answer after this long (async route)")
    args = parser.parse_args()
    if args.latency_ms:
        answer_after(args.latency_ms)
    proto = 0 if args.proto0 else socket.IPPROTO_TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"minimal server at http://127.0.0.1:{sock.getsockname()[1]}/v4", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
