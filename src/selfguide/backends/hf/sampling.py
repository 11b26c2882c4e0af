"""Reproducible sampling without generator state: each row's noise is a pure integer hash of
(row key, step, token id), and a token is picked by Gumbel-max over it.

Row (request i, sample j) has a key, a hash of (request seed, j). `pick_tokens` applies each
row's temperature, top-k and top-p, then picks argmax(logits + noise). Nothing touches the
global torch RNG, and a row's tokens do not depend on which other rows share its batch. Batched
kernels can still move logits by float noise; with Gumbel-max that flips a draw only when the
two best perturbed scores are within that noise of each other, independent of vocabulary size
(inverse-CDF sampling over the vocabulary would be ~vocabulary-size times more fragile).

Needs no torch at import: functions take the torch module (the llama.cpp backend shares them).
"""

from __future__ import annotations

import hashlib
import math


def row_seed(seed: int, sample_index: int) -> int:
    """The seed of sample `sample_index` of a request with `seed`: stable across runs and platforms."""
    digest = hashlib.sha256(f"selfguide-hf-row:{int(seed)}:{int(sample_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


MASK32 = 0xFFFFFFFF
HASH_MULT = 0x45D9F3B  # < 2**27, so a 32-bit value times it stays exact in int64
SAMPLER_ROW_CHUNK = 1 << 23  # at most this many (row, token) cells of noise at a time


def _mix32(x):
    """A 32-bit integer hash on int64 tensors (or ints) that hold values below 2**32."""
    x = x ^ (x >> 16)
    x = (x * HASH_MULT) & MASK32
    x = x ^ (x >> 16)
    x = (x * HASH_MULT) & MASK32
    return x ^ (x >> 16)


def gumbel_noise(torch, row_keys, step, tokens, dtype):
    """Gumbel(0, 1) noise for every (row, token) at one generation step, a pure function of
    (row key, step, token id): no generator state, the same on every device and batch layout.

    `row_keys` is an int64 tensor [rows, 2] of two 32-bit halves of each row's seed; `step` an int
    for every row or an int64 tensor [rows, 1]; `tokens` the vocabulary size (noise for every
    token id) or an int64 tensor [rows, k] of token ids."""
    if isinstance(tokens, int):
        tokens = torch.arange(tokens, device=row_keys.device, dtype=torch.int64)[None, :]
    step_key = _mix32((step * 0x9E3779B1 + 0x7F4A7C15) & MASK32)
    h = _mix32((tokens + row_keys[:, :1]) & MASK32)
    h = _mix32(h ^ row_keys[:, 1:2])
    h = _mix32(h ^ step_key)
    u = (h.to(dtype) + 0.5) / 4294967296.0  # strictly inside (0, 1)
    return -torch.log(-torch.log(u))


# The noise above lies in [-log(-log(u_min)), -log(-log(u_max))] (about -3.1 to 22.9): a token whose
# logit is further than that span (plus a margin for rounding) below its row's best can never win.
NOISE_SPAN = math.log(-math.log(0.5 / 2**32)) - math.log(-math.log((MASK32 + 0.5) / 2**32)) + 1.0


def _make_sampler(torch, row_keys, start_len: int, temperature: float, top_k: int, top_p: float, noise_dtype):
    """`_make_row_sampler` with one setting for every row."""
    return _make_row_sampler(torch, row_keys, start_len, [(temperature, top_k, top_p)] * len(row_keys), noise_dtype)


def pick_tokens(torch, scores, keys, steps, settings: list[tuple[float, int, float]], noise_dtype):
    """One token per row of `scores`: greedy for a row whose temperature is 0, else by Gumbel-max
    over that row's own noise after its temperature, top-k and top-p (`settings`: one such triple
    per row). `steps`: how many tokens each row has generated so far, an int for all rows or an
    int64 tensor [rows]; with the row's key it picks the noise. A row's draw depends on its own
    scores, key, step and setting only, never on the rows beside it."""

    def filtered(part, temperature, top_k, top_p):
        logits = part.float() / temperature
        vocab = logits.shape[-1]
        if 0 < top_k < vocab:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            probs = torch.softmax(logits, dim=-1)
            sorted_probs, sorted_index = torch.sort(probs, dim=-1, descending=True, stable=True)
            before = sorted_probs.cumsum(dim=-1) - sorted_probs
            drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, sorted_index, before >= top_p)
            logits = logits.masked_fill(drop, float("-inf"))
        return logits

    def draw(part, part_keys, part_steps, setting):
        rows, vocab = part.shape
        chunk = max(1, SAMPLER_ROW_CHUNK // max(vocab, 1))
        chosen = []
        for first in range(0, rows, chunk):
            logits = filtered(part[first : first + chunk], *setting).to(noise_dtype)
            chunk_keys = part_keys[first : first + chunk]
            step = part_steps if isinstance(part_steps, int) else part_steps[first : first + chunk, None]
            # Noise only for the tokens that can win (the top-k, or those within NOISE_SPAN of the
            # best): the same argmax as over the whole vocabulary, at a fraction of the hashing.
            best = logits.max(dim=-1, keepdim=True).values
            contenders = int((logits >= best - NOISE_SPAN).sum(dim=-1).max())
            if contenders * 4 < vocab:
                values, ids = torch.topk(logits, contenders, dim=-1)
                ids, order = ids.sort(dim=-1)  # vocabulary order, so ties break as over all tokens
                values = values.gather(-1, order)
                noise = gumbel_noise(torch, chunk_keys, step, ids, noise_dtype)
                chosen.append(ids.gather(-1, torch.argmax(values + noise, dim=-1, keepdim=True)).flatten())
            else:
                noise = gumbel_noise(torch, chunk_keys, step, vocab, noise_dtype)
                chosen.append(torch.argmax(logits + noise, dim=-1))
        return torch.cat(chosen)

    keys = keys.to(scores.device)
    if not isinstance(steps, int):
        steps = steps.to(scores.device)
    members: dict[tuple[float, int, float], list[int]] = {}
    for k, setting in enumerate(settings):
        members.setdefault(setting, []).append(k)
    tokens = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
    # Each setting's rows on their own: a row's draw is the same whatever shares its batch.
    for setting, rows in members.items():
        if len(rows) == scores.shape[0]:
            part, part_keys, part_steps, index = scores, keys, steps, slice(None)
        else:
            index = torch.tensor(rows, device=scores.device)
            part, part_keys = scores[index], keys[index]
            part_steps = steps if isinstance(steps, int) else steps[index]
        tokens[index] = part.argmax(-1) if setting[0] <= 0 else draw(part, part_keys, part_steps, setting)
    return tokens


def _make_row_sampler(torch, row_keys, start_len: int, settings: list[tuple[float, int, float]], noise_dtype):
    """`pick_tokens` as a logits processor for transformers' `generate` (every row at the same
    step: the ids past `start_len`). Returns logits that let greedy decoding pick exactly that token."""
    from transformers import LogitsProcessor

    class SeededRowSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step = max(input_ids.shape[1] - start_len, 0)
            tokens = pick_tokens(torch, scores, row_keys, step, settings, noise_dtype)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, tokens[:, None], 0.0)

    return SeededRowSampler()



def seed_keys(torch, seeds: list[int], device):
    """Each row's seed as two 32-bit halves, the key of its noise stream: int64 [rows, 2]."""
    keys = [[seed & MASK32, (seed >> 32) & MASK32] for seed in seeds]
    return torch.tensor(keys, dtype=torch.int64, device=device)
