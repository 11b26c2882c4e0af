"""A fake OpenAI-compatible server on 127.0.0.1 (stdlib http.server in a thread) for the cases a
real server will not produce on demand: replies that are not JSON, no choices, a request that
never gets an answer, a model swapped behind the same name. Chat answers come from `reply`."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FakeOpenAI:
    models: list[dict] = field(default_factory=lambda: [{"id": "fake-model", "object": "model", "owned_by": "test"}])
    reply: Callable[[dict, int], str] = lambda body, j: "positive"
    # Consumed one per chat request, in order: "badjson", "nochoices", "hang", "400"; then normal replies.
    faults: list[str] = field(default_factory=list)
    hang_models: bool = False  # GET /v1/models never answers
    system_fingerprint: str | None = None
    chat_requests: int = 0
    headers: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format, *args):
            pass

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with fake.lock:
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
            if fake.hang_models:
                fake.stop.wait(60)
                return
            self._send(200, json.dumps({"object": "list", "data": fake.models}).encode())

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with fake.lock:
                fake.chat_requests += 1
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                fault = fake.faults.pop(0) if fake.faults else None
            if fault == "hang":
                fake.stop.wait(60)
                return
            if fault == "badjson":
                return self._send(200, b"{this is not json")
            if fault == "400":
                return self._send(400, json.dumps({"error": {"message": "injected bad request"}}).encode())
            n = body.get("n") or 1
            choices = [] if fault == "nochoices" else [
                {"index": j, "message": {"role": "assistant", "content": fake.reply(body, j)}, "finish_reason": "stop"} for j in range(n)
            ]
            reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"), "choices": choices,
                     "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}}
            if fake.system_fingerprint:
                reply["system_fingerprint"] = fake.system_fingerprint
            self._send(200, json.dumps(reply).encode())

    return Handler


@contextlib.contextmanager
def fake_openai(**settings) -> Iterator[tuple[FakeOpenAI, str]]:
    """Yield (the fake, its /v1 base URL)."""
    fake = FakeOpenAI(**settings)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        fake.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
