"""Any OpenAI-compatible chat server as a backend: vLLM, SGLang, llama.cpp, Ollama, `transformers
serve`, hosted APIs.

Requests go out concurrently (a thread pool of `concurrency` workers) through the official `openai`
client, and each request's completions are yielded the moment they are all in, so the caller can
persist them and a crash loses only what was in flight.

Servers differ, so the backend is defensive:
- stop strings: at most 4 are sent (the OpenAI limit); the text is cut at the first occurrence of
  any of them client-side as well, since some servers keep the stop string or ignore the rest;
- `n`: if the server returns fewer choices than asked, refuses `n > 1` (llama.cpp), or
  `n_per_request=False`, the samples are fetched one request each, with seeds derived from
  (seed, sample index); once seen, the backend remembers it for the rest of its life;
- `top_k` goes in `extra_body` (vLLM, SGLang, llama.cpp take it; hosted OpenAI and `transformers
  serve` reject it: turn `send_top_k` off for those);
- retries (429, 5xx, timeouts, dropped connections) are done here, with exponential backoff and
  jitter and the server's Retry-After honoured, not by the client, so they are counted and tested.

The API key is read from the environment variable named by `api_key_env` and is never put in
`info`, `repr`, an exception or a log line; server messages that echo it are redacted.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

from selfguide import interruptible
from selfguide.backends.base import BackendInfo, Completion, Request, SamplingParams, ScoreRequest, label_scoring_unsupported
from selfguide.errors import SelfGuideError
from selfguide.redact import redact_url, split_credentials

logger = logging.getLogger(__name__)

MAX_STOP_STRINGS = 4  # the OpenAI API accepts at most this many stop strings
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DUMMY_KEY = "EMPTY"
RETRY_AFTER_CAP = 300.0  # never sleep longer than this on a server's say-so


def sample_seed(seed: int, j: int) -> int:
    """The seed of sample `j` when a request's n samples are fetched one request each.
    Sample 0 keeps the request's own seed, so a server that ignores `n` gives the same first
    sample whichever way it was asked for."""
    if j == 0:
        return seed
    digest = hashlib.sha256(f"{seed}\x1fsample\x1f{j}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` cut before the earliest occurrence of any stop string, and whether it was cut."""
    cut = min((pos for pos in (text.find(s) for s in stop if s) if pos >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(max(total, 0), parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


class MalformedReply(Exception):
    """A 200 reply that is no usable chat completion; retried like a 5xx."""


class DaemonPool:
    """A minimal thread pool whose workers are daemon threads: unlike ThreadPoolExecutor, whose
    threads the interpreter joins at exit, a request stuck in flight never delays Ctrl-C or exit."""

    def __init__(self, workers: int, stop_event: threading.Event):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = stop_event
        self._workers = max(workers, 1)
        for k in range(self._workers):
            threading.Thread(target=self._work, name=f"openai-backend-{k}", daemon=True).start()

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            if self._stop.is_set() or not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # handed to the caller through the future
                future.set_exception(e)

    def shutdown(self) -> None:
        for _ in range(self._workers):
            self._jobs.put(None)


class _Stopped(Exception):
    """A worker noticed the batch was abandoned (an error elsewhere, or the caller stopped)."""


class _NRejected(Exception):
    """The server refused n > 1 (llama.cpp: "Only one completion choice is allowed")."""


# Error messages that say the server does not take `n` (rather than something else being wrong).
N_REFUSAL = re.compile(r"\bn\b|\bchoices?\b", re.IGNORECASE)


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        max_retries: int = 6,
        timeout: float = 120.0,
        send_top_k: bool = True,
        send_seed: bool = True,
        n_per_request: bool = True,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        auth: str = "bearer",
    ):
        if not base_url:
            raise SelfGuideError("the openai backend needs base_url: the server's /v1 URL, e.g. http://127.0.0.1:8000/v1")
        if not model:
            raise SelfGuideError("the openai backend needs the served model name (model name)")
        if concurrency < 1:
            raise SelfGuideError(f"concurrency must be at least 1, got {concurrency}")
        try:
            from openai import OpenAI
        except ImportError as e:  # a core dependency, but say so plainly if it is broken
            raise SelfGuideError("the openai backend needs the `openai` package: pip install openai") from e

        url, credentials = split_credentials(base_url)
        headers = auth_headers(redact_url(base_url), auth, credentials, api_key_env)
        self.model = model
        self.base_url = redact_url(base_url)  # what messages show; the client gets `url` and `headers`
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.send_top_k = send_top_k
        self.send_seed = send_seed
        self.n_per_request = n_per_request
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.info = BackendInfo("openai", model, f"{self.base_url}|{model}", {"base_url": self.base_url})

        key = os.environ.get(api_key_env) or DUMMY_KEY
        # Kept only to redact server messages that echo them; never printed.
        self._secrets = tuple(s for s in {key, *(credentials or ())} if s and s != DUMMY_KEY)
        # The client's own retries are off: ours are counted, logged and honour Retry-After.
        self._client = OpenAI(api_key=key, base_url=url, max_retries=0, timeout=timeout, default_headers=headers)
        self.system_fingerprint: str | None = None  # the first one the server reported
        self._n_ignored = not n_per_request  # set once the server returns fewer choices than asked, or refuses n
        self._lock = threading.Lock()
        self.stats = {"calls": 0, "retries": 0, "failed_attempts": 0}

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
            f"concurrency={self.concurrency}, max_retries={self.max_retries})"
        )

    # ----- the batch -----

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (index, its n completions) for each request as soon as all its samples are in."""
        if not requests:
            return
        stop_event = threading.Event()
        done: queue.Queue[Future] = queue.Queue()
        slots: list[dict[int, Completion]] = [{} for _ in requests]
        pending: set[Future] = set()  # finished ones leave, so their results are not kept twice
        pool = DaemonPool(min(self.concurrency, sum(max(r.params.n, 1) for r in requests)), stop_event)

        def submit(i: int, n: int, seed: int, first_slot: int) -> None:
            future = pool.submit(self._call, requests[i], n, seed, stop_event)
            future.meta = (i, n, first_slot)  # type: ignore[attr-defined]
            pending.add(future)
            future.add_done_callback(done.put)

        try:
            for i, request in enumerate(requests):
                n = max(request.params.n, 1)
                if n == 1 or not self._n_ignored:
                    submit(i, n, request.params.seed, 0)
                else:
                    for j in range(n):
                        submit(i, 1, sample_seed(request.params.seed, j), j)
            while pending:
                future = interruptible.get(done)
                pending.discard(future)
                i, asked, first_slot = future.meta  # type: ignore[attr-defined]
                want = max(requests[i].params.n, 1)
                try:
                    completions = future.result()  # re-raises a worker's SelfGuideError
                except _NRejected as refusal:
                    if not self._n_ignored:
                        logger.info("%s refuses n=%d (%s): fetching samples one request each", self.base_url, asked, refusal)
                    self._n_ignored = True
                    for j in range(first_slot, first_slot + asked):
                        submit(i, 1, sample_seed(requests[i].params.seed, j), j)
                    continue
                for k, completion in enumerate(completions[:asked]):
                    slots[i][first_slot + k] = completion
                if asked > 1 and len(completions) < asked:
                    # The server ignores n (or caps it): fetch the missing samples one by one.
                    if not self._n_ignored:
                        logger.info("%s returned %d choices for n=%d: fetching samples one request each", self.base_url, len(completions), asked)
                    self._n_ignored = True
                    for j in range(first_slot + len(completions), first_slot + asked):
                        submit(i, 1, sample_seed(requests[i].params.seed, j), j)
                if len(slots[i]) == want:
                    yield i, [slots[i][j] for j in range(want)]
                    slots[i] = {}
        finally:
            # On an error, Ctrl-C or an abandoned generator: queued calls never start, calls in
            # backoff stop waiting, and calls in flight are left to daemon threads, so nothing
            # holds up the caller or the process's exit.
            stop_event.set()
            for future in list(pending):
                future.cancel()
            pool.shutdown()

    # ----- one HTTP request, retried -----

    def _call(self, request: Request, n: int, seed: int, stop_event: threading.Event) -> list[Completion]:
        import openai

        params = request.params
        kwargs = self._request_kwargs(request, n, seed)
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if stop_event.is_set():
                raise _Stopped()
            with self._lock:
                self.stats["calls"] += 1
                if attempt:
                    self.stats["retries"] += 1
            retry_after = None
            try:
                response = self._client.chat.completions.create(**kwargs)
                return self._completions(response, params)
            except openai.APIStatusError as e:
                message = self._redact(_server_message(e))
                if n > 1 and e.status_code in (400, 422, 500) and N_REFUSAL.search(message):
                    raise _NRejected(f"HTTP {e.status_code}: {message}") from None
                if e.status_code not in RETRYABLE_STATUS:
                    raise SelfGuideError(self._fatal_message(e.status_code, message)) from None
                last_error = f"HTTP {e.status_code}: {message}"
                retry_after = _retry_after_seconds(e.response.headers)
            except openai.APIConnectionError as e:  # includes timeouts, refused and dropped connections
                cause = e.__cause__
                detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
                last_error = self._redact(f"{type(e).__name__} ({detail})")
            except SelfGuideError:
                raise
            except Exception as e:  # a reply we cannot parse (bad JSON, no choices): retried like a 5xx
                last_error = self._redact(f"malformed reply ({type(e).__name__}: {str(e)[:200]})")
            with self._lock:
                self.stats["failed_attempts"] += 1
            if attempt == self.max_retries:
                break
            if stop_event.is_set():  # the batch was abandoned while this request was in flight: no warning
                raise _Stopped()
            delay = self._backoff(attempt, retry_after)
            logger.warning("%s: %s; retry %d/%d in %.1fs", self.base_url, last_error, attempt + 1, self.max_retries, delay)
            if stop_event.wait(delay):
                raise _Stopped()
        raise SelfGuideError(f"{self.base_url}: model {self.model!r} failed after {self.max_retries} retries; last error: {last_error}")

    def _request_kwargs(self, request: Request, n: int, seed: int) -> dict:
        params: SamplingParams = request.params
        kwargs: dict = {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if n > 1:
            kwargs["n"] = n
        if params.stop:
            kwargs["stop"] = list(params.stop[:MAX_STOP_STRINGS])
        if self.send_seed:
            kwargs["seed"] = seed
        if self.send_top_k:
            # -1 turns top-k off explicitly, so a server-side default (vLLM applies the model's
            # generation_config.json) cannot switch it on behind our back.
            kwargs["extra_body"] = {"top_k": params.top_k if params.top_k > 0 else -1}
        return kwargs

    def _completions(self, response, params: SamplingParams) -> list[Completion]:
        if isinstance(response, (str, bytes)) or not hasattr(response, "choices"):
            raise MalformedReply(f"not a chat completion: {str(response)[:100]!r}")
        choices = sorted(response.choices or [], key=lambda c: c.index or 0)
        if not choices:
            raise MalformedReply("no choices")
        self._note_system_fingerprint(getattr(response, "system_fingerprint", None))
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_total = int(getattr(usage, "completion_tokens", 0) or 0)
        counts = split_evenly(completion_total, len(choices))
        completions = []
        for choice, count in zip(choices, counts):
            text = (choice.message.content if choice.message is not None else None) or ""
            text, cut = truncate_at_stop(text, params.stop)
            finish = "length" if choice.finish_reason == "length" and not cut else "stop"
            completions.append(Completion(text=text, completion_tokens=count, prompt_tokens=prompt_tokens, finish_reason=finish))
        return completions

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2**attempt)
        delay = delay * (0.5 + random.random() / 2)  # jitter: spread retries of concurrent workers
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        return delay

    def _fatal_message(self, status: int, message: str) -> str:
        text = f"{self.base_url}: model {self.model!r}: HTTP {status}: {message}"
        lowered = message.lower()
        if status in (400, 422) and "top_k" in lowered:
            text += " (this server does not take top_k: set send_top_k to false)"
        elif status in (400, 422) and "seed" in lowered:
            text += " (this server does not take seed)"
        elif status in (401, 403):
            text += f" (check the API key in the environment variable {self.api_key_env})"
        elif status == 404:
            text += " (is base_url the server's /v1 URL, and the model name one the server serves?)"
        return text

    def _note_system_fingerprint(self, value: str | None) -> None:
        """Warn when the server's system_fingerprint changes mid-run: the model behind it changed."""
        if not value:
            return
        with self._lock:
            previous, self.system_fingerprint = self.system_fingerprint, self.system_fingerprint or value
        if previous and previous != value:
            logger.warning("%s: model %r now reports system_fingerprint %r (was %r): the server's model changed during the run", self.base_url, self.model, value, previous)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact_url(text)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[tuple[int, list]]:
        raise label_scoring_unsupported("openai")

    def close(self) -> None:
        self._client.close()


def _server_message(error) -> str:
    """The server's own words from an error reply: OpenAI's {"error": {"message"}}, FastAPI's
    {"detail"}, or the raw body."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for field in ("message", "detail", "msg"):
                if inner.get(field):
                    return str(inner[field])
        elif inner:
            return str(inner)
        if body.get("detail"):
            return str(body["detail"])
    if body:
        return str(body)[:500]
    try:
        return error.response.text[:500] or error.message
    except Exception:
        return str(error.message)


def _retry_after_seconds(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if given."""
    try:
        value = headers.get("retry-after-ms")
        if value:
            return max(float(value) / 1000, 0.0)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except Exception:
        return None


def auth_headers(shown_url: str, auth: str, credentials: tuple[str, str] | None, api_key_env: str) -> dict:
    """Extra headers for the chosen auth: none for bearer (the client sends the API key), an HTTP
    Basic header for basic. Credentials in the URL are used only when asked for, never silently."""
    if auth == "basic":
        if credentials is None:
            raise SelfGuideError(f"{shown_url}: auth is basic but base_url has no user:password@ (e.g. http://user:pass@host/v1)")
        import base64

        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if credentials is not None:
        raise SelfGuideError(
            f"{shown_url}: base_url carries user:password@: set model.auth to basic to send them as HTTP Basic auth, "
            f"or remove them and put the API key in ${api_key_env} (sent as a bearer token)"
        )
    return {}


# Fields of a /v1/models entry that change on every request (vLLM stamps `created` and random
# permission ids), so they say nothing about which model is served.
VOLATILE_MODEL_FIELDS = ("created", "permission", "object")


def served_model_entry(model: str, *, base_url: str, api_key_env: str = "OPENAI_API_KEY", auth: str = "bearer", timeout: float = 10.0) -> dict:
    """The server's /v1/models entry for `model` (volatile fields dropped): a health check at start
    that fails fast, naming the URL and what it found, and the served model's identity for the cache.

    A server without /v1/models (404/405/501) gets an empty identity rather than an error."""
    import openai
    from openai import OpenAI

    url, credentials = split_credentials(base_url)
    shown = redact_url(base_url)
    headers = auth_headers(shown, auth, credentials, api_key_env)
    client = OpenAI(api_key=os.environ.get(api_key_env) or DUMMY_KEY, base_url=url, max_retries=0, timeout=timeout, default_headers=headers)
    try:
        entries = [entry.model_dump() for entry in client.models.list()]
    except openai.APITimeoutError:
        raise SelfGuideError(f"{shown}/models: no answer within {timeout:g}s: is the server up and not overloaded? (model.health_timeout)") from None
    except openai.APIConnectionError as e:
        cause = e.__cause__ or e
        raise SelfGuideError(f"{shown}/models: server not reachable ({redact_url(f'{type(cause).__name__}: {cause}')}): start it, or fix --base-url") from None
    except openai.APIStatusError as e:
        if e.status_code in (404, 405, 501):
            logger.info("%s/models: HTTP %d; the served model cannot be identified", shown, e.status_code)
            return {}
        hint = f" (check the API key in ${api_key_env}, or model.auth)" if e.status_code in (401, 403) else ""
        raise SelfGuideError(f"{shown}/models: HTTP {e.status_code}{hint}") from None
    except Exception as e:  # a reply that is no model list
        raise SelfGuideError(f"{shown}/models: not an OpenAI-compatible model list ({type(e).__name__}: {str(e)[:100]}): is --base-url the server's /v1 URL?") from None
    finally:
        client.close()
    for entry in entries:
        if entry.get("id") == model:
            return {k: v for k, v in entry.items() if k not in VOLATILE_MODEL_FIELDS}
    # Some servers take names they do not list (aliases, local paths): go on, unidentified.
    served = ", ".join(str(e.get("id")) for e in entries[:10]) or "none"
    logger.warning("%s/models does not list %r (it lists: %s); the served model cannot be identified", shown, model, served)
    return {}
