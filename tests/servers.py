"""Test helpers: a real `transformers serve` on 127.0.0.1 serving a local model folder, and a
fault-injecting HTTP proxy to put in front of it.

What `transformers serve` (transformers 5.x) does with the OpenAI sampling fields, as found here:
- the model name in requests must be exactly the folder path it was started with (400 otherwise);
- `n` is ignored (a warning; one choice comes back);
- `seed` is accepted and sets the global torch seed (racy under concurrent requests);
- `top_k` is rejected (422 "Unexpected fields in the request");
- `stop` is mapped to `stop_strings`: generation stops after the token that completes a stop
  string, and the stop string is left in the text;
- `temperature`/`top_p` only matter when the model's generation_config has `do_sample=True`;
  otherwise it decodes greedily. `serve_transformers(..., do_sample=True)` serves a copy of the
  folder with that set.
- `/health` answers once the model is loaded; `/v1/models` fails (500) without a hub cache folder.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base_url: str  # the /v1 URL, for OpenAIBackend(base_url=...)
    model: str  # the model name requests must carry
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def _transformers_cli() -> list[str]:
    script = Path(sys.executable).parent / "transformers"
    if script.exists():
        return [str(script)]
    found = shutil.which("transformers")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"]


def _wait_ready(url: str, process: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited with code {process.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"transformers serve not ready at {url} after {timeout:.0f}s:\n{log_path.read_text(errors='replace')[-4000:]}")


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the server's own process group only
    except (ProcessLookupError, PermissionError):
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait(grace)


@contextlib.contextmanager
def serve_transformers(model_dir: str | Path, *, do_sample: bool = False, timeout: float = 120.0, workdir: str | Path | None = None) -> Iterator[Server]:
    """Run `transformers serve <model_dir>` on 127.0.0.1 at a free port until the block ends.

    do_sample: serve a copy of the folder whose generation_config samples (so temperature,
    top_p and seed take effect); the original folder is left untouched.
    """
    with contextlib.ExitStack() as stack:
        work = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tf-serve-")))
        work.mkdir(parents=True, exist_ok=True)
        model_path = Path(model_dir).resolve()
        if do_sample:
            copy = work / "model"
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(model_path, copy)
            config_file = copy / "generation_config.json"
            config = json.loads(config_file.read_text()) if config_file.exists() else {}
            config["do_sample"] = True
            config_file.write_text(json.dumps(config, indent=2))
            model_path = copy
        port = free_port()
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            TOKENIZERS_PARALLELISM="false",
            CUDA_VISIBLE_DEVICES=env.get("CUDA_VISIBLE_DEVICES", ""),
            HF_HOME=str(work / "hf-home"),  # nothing written to the user's cache
        )
        env.pop("OPENAI_API_KEY", None)
        log_path = work / "serve.log"
        log = stack.enter_context(open(log_path, "wb"))
        command = [*_transformers_cli(), "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning", str(model_path)]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            _wait_ready(f"http://127.0.0.1:{port}/health", process, timeout, log_path)
            yield Server(base_url=f"http://127.0.0.1:{port}/v1", model=str(model_path), process=process, log_path=log_path)
        finally:
            _stop(process)


# ----- fault-injecting proxy -----

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection", "te", "upgrade"}


@dataclass
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream` (http://host:port) that fails some requests.

    fail: "first" fails the first `k` requests, "alternate" every other request (1st, 3rd, ...),
    "always" every request, "never" none.
    mode: "503", "429", "500", "400", ... (an HTTP status with an OpenAI-style error body) or
    "drop" (the connection is closed without a reply).
    retry_after: a Retry-After header value sent with failures, if given.
    Every request is counted, the JSON bodies of POSTs are kept in `bodies`, and `max_in_flight`
    is the most requests it held open at once.
    """

    upstream: str | None = None
    fail: str = "first"
    k: int = 0
    mode: str = "503"
    retry_after: str | None = None
    echo_auth: bool = False  # failures quote the Authorization header back (a careless server)
    reject_n: int | None = None  # answer requests with n > 1 with this status, as llama.cpp does
    requests: int = 0
    failed: int = 0
    forwarded: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list = field(default_factory=list)
    headers: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def should_fail(self, number: int) -> bool:  # number counts from 1
        if self.fail == "always":
            return True
        if self.fail == "first":
            return number <= self.k
        if self.fail == "alternate":
            return number % 2 == 1
        return False

    def reset(self, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            self.requests = self.failed = self.forwarded = self.max_in_flight = 0
            self.bodies.clear()
            self.headers.clear()


def _make_handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        _counted = False  # this request is in `in_flight`

        protocol_version = "HTTP/1.0"  # one request per connection: simple and predictable

        def log_message(self, format, *args):  # quiet
            pass

        def _handle(self) -> None:
            with proxy._lock:
                proxy.in_flight += 1
                proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
            self._counted = True
            try:
                self._handle_counted()
            finally:
                self._uncount()

        def _uncount(self) -> None:
            # A request stops counting when its reply starts: the client can send its next request
            # before this thread gets back from writing the reply.
            if self._counted:
                self._counted = False
                with proxy._lock:
                    proxy.in_flight -= 1

        def send_response(self, *args, **kwargs) -> None:
            self._uncount()
            super().send_response(*args, **kwargs)

        def _handle_counted(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                payload = body
            with proxy._lock:
                proxy.requests += 1
                number = proxy.requests
                fail = proxy.should_fail(number)
                if fail:
                    proxy.failed += 1
                if body:
                    proxy.bodies.append(payload)
                proxy.headers.append({k.lower(): v for k, v in self.headers.items()})  # names lower-cased
            wants_n = isinstance(payload, dict) and (payload.get("n") or 1) > 1
            if fail:
                self._fail()
            elif proxy.reject_n is not None and wants_n:
                self._reply(proxy.reject_n, {"error": {"code": proxy.reject_n, "message": "Only one completion choice is allowed", "type": "server_error"}})
            elif proxy.upstream is None:
                self._reply(502, {"error": {"message": "no upstream", "type": "proxy_error"}})
            else:
                self._forward(body)

        def _fail(self) -> None:
            if proxy.mode == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            status = int(proxy.mode)
            extra = {"Retry-After": proxy.retry_after} if proxy.retry_after is not None else {}
            message = f"injected failure {status}"
            if proxy.echo_auth:
                message += f" for credentials {self.headers.get('Authorization')!r}"
            self._reply(status, {"error": {"message": message, "type": "injected", "code": status}}, extra)

        def _reply(self, status: int, payload: dict, extra: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _forward(self, body: bytes) -> None:
            target = urllib.parse.urlsplit(proxy.upstream)
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                reply = connection.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with proxy._lock:
                    proxy.forwarded += 1
            except OSError as e:
                self._reply(502, {"error": {"message": f"proxy could not reach upstream: {e}", "type": "proxy_error"}})
            finally:
                connection.close()

        do_GET = do_POST = _handle

    return Handler


@contextlib.contextmanager
def fault_proxy(upstream: str | None = None, **settings) -> Iterator[tuple[FaultProxy, str]]:
    """Yield (proxy, its /v1 base URL). `upstream` is the real server's root or /v1 URL."""
    if upstream is not None:
        parts = urllib.parse.urlsplit(upstream)
        upstream = f"{parts.scheme}://{parts.netloc}"
    proxy = FaultProxy(upstream=upstream, **settings)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield proxy, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
