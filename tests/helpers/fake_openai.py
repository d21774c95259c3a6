"""A scripted OpenAI-compatible chat-completions server on loopback, for failure-path tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    """Serves ``/v1/chat/completions``; each request takes the next action of ``script``
    (then the last one forever): ``"ok"``, ``429``, ``500``, ``"slow"`` (sleeps past client timeouts),
    ``"malformed"`` (200 with a non-JSON body), ``"no_choices"`` (200, JSON without choices).
    ``script`` may instead be a callable ``body -> (text, top_logprobs | None)`` answering every request;
    the top log-probs are returned (for the first token) when the request asks for ``logprobs``."""

    def __init__(self, script: list, slow_seconds: float = 2.0):
        self.script = script if callable(script) else list(script)
        self.slow_seconds = slow_seconds
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append(body)
                    n = len(outer.requests)
                    action = "ok" if callable(outer.script) else outer.script[min(n - 1, len(outer.script) - 1)]
                if action == "slow":
                    time.sleep(outer.slow_seconds)
                    action = "ok"
                if action in (429, 500):
                    payload = json.dumps({"error": {"message": f"status {action}", "type": "test"}}).encode()
                    self.send_response(action)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "malformed":
                    payload = b"this is not json"
                elif action == "no_choices":
                    payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"]}).encode()
                else:
                    text, top = (outer.script(body) if callable(outer.script)
                                 else ("echo: " + body["messages"][-1]["content"], None))
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    if top and body.get("logprobs"):
                        first = max(top, key=top.get)
                        choice["logprobs"] = {"content": [{"token": first, "logprob": top[first], "bytes": None, "top_logprobs": [
                            {"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]}]}
                    payload = json.dumps({
                        "id": f"cmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [choice],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
