"""The continuous-batching scheduler on a scripted forward pass, apart from any model: rows join a
running batch, samples fork, budgets hold, and no row's tokens depend on its batch."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from selfguide.backends.hf.rows import Row, Settings
from selfguide.backends.hf.sampling import row_seed
from selfguide.backends.hf.scheduler import DecodeOptions, Scheduler

VOCAB, EOS, PAD = 16, 0, 15


class ScriptedForward:
    """A "model" whose next-token logits are a hash of the row's real tokens, read back from its
    KV cache (one layer whose keys are the token ids): a row whose cache was mixed up with
    another's, or misaligned with its ids, fails the check in `forward`."""

    device = torch.device("cpu")
    pad_id = PAD
    eos = torch.tensor([EOS])
    noise_dtype = torch.float64

    def __init__(self):
        self.steps = 0  # row-steps run

    def prefill(self, rows: list[Row]):
        width = max(len(row.prompt) for row in rows)
        ids = torch.full((len(rows), width), PAD)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            ids[k, width - len(row.prompt) :] = torch.tensor(row.prompt)
            mask[k, width - len(row.prompt) :] = 1
        if width < 2:
            return ids, mask, None
        states = (ids[:, None, :-1, None] * mask[:, None, :-1, None]).float()
        return ids, mask, DynamicCache([(states, states.clone())])

    def forward(self, ids, mask, cache):
        cache = cache if cache is not None else DynamicCache([(torch.zeros(len(ids), 1, 0, 1),) * 2])
        column = ids[:, None, -1:, None].float()
        keys, _ = cache.update(column, column.clone(), 0)
        assert keys.shape[2] == ids.shape[1], "the cache and the ids must stay aligned"
        real = mask.bool()
        assert torch.equal(keys[:, 0, :, 0][real], ids[real].float()), "a row's cache must be its own"
        self.steps += len(ids)
        scores = torch.zeros(len(ids), VOCAB)
        for k in range(len(ids)):
            tokens = ids[k][real[k]].tolist()
            scores[k, (sum(t * (j + 3) for j, t in enumerate(tokens)) * 7 + len(tokens)) % VOCAB] = 3.0
        return scores, cache

    def stops(self, setting: Settings) -> tuple[str, ...]:
        return ()

    def stopped(self, ids, stops):
        return torch.zeros(len(ids), dtype=torch.bool)

    def free_memory(self) -> None:
        pass


def rows_and_settings(requests: list[tuple[tuple[int, ...], int, float, int]]):
    """(prompt, n, temperature, max_new_tokens) per request, as the backend builds rows (each
    request's seed is its first prompt token, so that it decodes alike alone or among others)."""
    settings = {i: Settings(temperature, 0, 1.0, limit, ()) for i, (_, _, temperature, limit) in enumerate(requests)}
    rows = [Row(i, j, row_seed(prompt[0], j), prompt) for i, (prompt, n, _, _) in enumerate(requests) for j in range(n)]
    return rows, settings


def decode(requests, **options) -> tuple[dict, Scheduler, ScriptedForward]:
    model = ScriptedForward()
    scheduler = Scheduler(model, DecodeOptions(**options))
    rows, settings = rows_and_settings(requests)
    return {(row.request, row.sample): ids for row, ids in scheduler.stream(rows, settings)}, scheduler, model


REQUESTS = [((3, 1, 4, 1, 5), 4, 1.0, 9), ((2, 7), 1, 0.0, 12), ((1,), 3, 0.7, 6), ((9, 2, 6, 5, 3, 5, 8, 9), 2, 1.0, 14)]
REQUESTS += [((k + 1, 2 * k + 1, 3), 2, 1.0, 3 + k % 7) for k in range(8)]


def test_rows_join_and_fork_and_each_gets_what_it_gets_alone():
    admitted, forked = [], []
    model = ScriptedForward()
    scheduler = Scheduler(model, DecodeOptions(batch_size=6, max_batch_tokens=10_000))
    admit, step = scheduler.admit, scheduler.step

    def spy_admit(batch, forks, wave, settings):
        admitted.append((batch is not None, len(forks)))
        return admit(batch, forks, wave, settings)

    def spy_step(batch):
        ended, fork = step(batch)
        forked.append(fork is not None)
        return ended, fork

    scheduler.admit, scheduler.step = spy_admit, spy_step
    rows, settings = rows_and_settings(REQUESTS)
    together = {(row.request, row.sample): ids for row, ids in scheduler.stream(rows, settings)}
    assert any(running for running, _ in admitted), "no row joined a running batch"
    assert any(forks for _, forks in admitted) and any(forked), "no sample forked off and joined"
    for i, request in enumerate(REQUESTS):
        alone, _, _ = decode([request], share_samples=False)
        assert {j: ids for (_, j), ids in alone.items()} == {j: ids for (r, j), ids in together.items() if r == i}, i
    ends = {ids[-1] == EOS for ids in together.values()}
    assert ends == {True, False}, "the script must end some rows by EOS and others at their limit"


def test_shared_samples_save_row_steps_and_change_no_token():
    shared, _, with_sharing = decode(REQUESTS, batch_size=32)
    apart, _, without = decode(REQUESTS, batch_size=32, share_samples=False)
    assert shared == apart
    assert with_sharing.steps < without.steps


def test_no_batch_exceeds_its_budgets_counting_every_sample_as_a_row():
    budget, most = 120, 5
    model = ScriptedForward()
    scheduler = Scheduler(model, DecodeOptions(batch_size=most, max_batch_tokens=budget))
    admit, sizes = scheduler.admit, []

    def spy(batch, forks, wave, settings):
        joined = admit(batch, forks, wave, settings)
        samples = sum(len(members) for members in joined.rows)
        sizes.append((samples, samples * (joined.ids.shape[1] + joined.remaining())))
        return joined

    scheduler.admit = spy
    rows, settings = rows_and_settings(REQUESTS)
    got = {(row.request, row.sample): ids for row, ids in scheduler.stream(rows, settings)}
    assert got == decode(REQUESTS)[0]
    assert len(sizes) > 2
    assert all(samples <= most and tokens <= budget for samples, tokens in sizes if samples > 1), sizes


def test_without_refill_a_batch_runs_to_its_end_before_the_next_starts():
    model = ScriptedForward()
    scheduler = Scheduler(model, DecodeOptions(batch_size=4, refill=False))
    admit, running = scheduler.admit, []

    def spy(batch, forks, wave, settings):
        running.append(batch is not None or bool(forks))
        return admit(batch, forks, wave, settings)

    scheduler.admit = spy
    rows, settings = rows_and_settings(REQUESTS)
    got = {(row.request, row.sample): ids for row, ids in scheduler.stream(rows, settings)}
    assert got == decode(REQUESTS)[0]
    assert len(running) > 1 and not any(running)


class OwnCacheForward(ScriptedForward):
    """As a model that picks its own cache, one that cannot be joined or forked (a sliding-window
    layer), when nothing was cached before its first step: one-token prompts."""

    def forward(self, ids, mask, cache):
        if cache is None:
            from transformers.cache_utils import DynamicSlidingWindowLayer

            cache = DynamicCache()
            cache.layers = [DynamicSlidingWindowLayer(sliding_window=1000)]
        return super().forward(ids, mask, cache)


ONE_TOKEN = [((k + 1,), 1, 0.0, limit) for k, limit in enumerate([2, 2, 12, 12, 8, 8, 8, 8])]


def test_a_cache_that_cannot_be_joined_decodes_batch_by_batch():
    model = OwnCacheForward()
    scheduler = Scheduler(model, DecodeOptions(batch_size=4))
    admit, running = scheduler.admit, []

    def spy(batch, forks, wave, settings):
        running.append(batch is not None)
        return admit(batch, forks, wave, settings)

    scheduler.admit = spy
    rows, settings = rows_and_settings(ONE_TOKEN)
    together = {(row.request, row.sample): ids for row, ids in scheduler.stream(rows, settings)}
    assert len(running) > 1 and not any(running)
    for i, request in enumerate(ONE_TOKEN):
        alone = Scheduler(OwnCacheForward(), DecodeOptions()).stream(*rows_and_settings([request]))
        assert [ids for _, ids in alone] == [together[i, 0]], i


def test_samples_that_part_in_a_cache_that_cannot_take_rows_start_again_alone():
    requests = [((k + 1,), 4, 1.0, 6) for k in range(3)]
    options = DecodeOptions()
    rows, settings = rows_and_settings(requests)
    together = dict(Scheduler(OwnCacheForward(), options).stream(rows, settings))
    assert not options.share_samples  # learnt from the first fork
    rows, settings = rows_and_settings(requests)
    apart = dict(Scheduler(OwnCacheForward(), DecodeOptions(share_samples=False)).stream(rows, settings))
    assert {(r.request, r.sample): ids for r, ids in together.items()} == {(r.request, r.sample): ids for r, ids in apart.items()}
