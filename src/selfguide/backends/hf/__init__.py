"""In-process generation with transformers (optionally with a PEFT adapter on top).

Design, in short, one module each:

* backend.py, `HFBackend`: prompts are token ids from `selfguide.backends.chat.encode_prompt`,
  the same encoding training uses; `generate` and `score` entry points. Rows carry their own
  sampling settings (temperature, top-k, top-p, token limit, stop strings), so requests with
  different settings share batches: concurrent callers merged into one call
  (backends/batcher.py) run side by side. (transformers' `generate`, used with `drop_finished`
  off, takes one setting per batch: there requests are grouped by settings first.)
* sampling.py: per-row reproducible sampling, Gumbel-max over counter-based noise, with no
  generator state; a row's tokens do not depend on which other rows share its batch.
* prefixes.py and prefill.py: each distinct prompt is prefilled once for its n samples, and
  prompts that share a long token prefix (a task's instruction and demos) share its KV cache.
* scheduler.py: continuous batching. Rows leave the batch when they end, waiting rows join as
  soon as a quarter of it is free, a request's samples share a row until their tokens part,
  within `batch_size` rows and `max_batch_tokens`. The KV cache decodes in place
  (backends/decode_cache.py). It runs on any `Forward`, a model or a scripted fake.
* loading.py: model, tokenizer and adapter loading, device and dtype resolution.
* `score` gives the log-probability of fixed candidate answers: one prefill per distinct prompt
  (with the same prefix reuse), then one forward over every candidate as a row of its own.

Importing this package loads no torch; building an HFBackend does.
"""

from selfguide.backends.fingerprint import fingerprint
from selfguide.backends.hf.backend import HFBackend
from selfguide.backends.hf.prefixes import shared_prefixes
from selfguide.backends.hf.rows import validate as _validate
from selfguide.backends.hf.sampling import NOISE_SPAN, _make_row_sampler, _make_sampler, gumbel_noise, pick_tokens, row_seed

__all__ = ["HFBackend", "row_seed", "pick_tokens", "gumbel_noise", "shared_prefixes", "fingerprint", "NOISE_SPAN"]
