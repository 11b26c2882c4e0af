"""Continuous batching: which rows decode together, step by step, apart from any model.

Rows come sorted by shared prefix then longest prompt first. A row leaves the batch when it
ends, and waiting rows are prefilled and join it as soon as a quarter of it is free, within
`batch_size` rows and `max_batch_tokens` ~ rows * (width + most new tokens). Sampled answers
are mostly far shorter than their longest, and a step of a few rows costs nearly what a full
one does. The KV cache has room for the steps to come, so a step writes in place
(backends/decode_cache.py). A request's n samples share one row while their tokens agree, and
fork when they part: at a low temperature most never do (`share_samples`). Budgets still count
every sample as a row, as each may fork into one. Each sample is yielded as soon as it ends.

The model is a `Forward`: its prefill, one decoding step, and its stop rules. Tests drive the
scheduler with a scripted one (tests/backends/test_scheduler.py).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from selfguide.backends import decode_cache
from selfguide.backends.hf.decoding import Decoding
from selfguide.backends.hf.loading import out_of_memory
from selfguide.backends.hf.rows import Row, Settings
from selfguide.backends.hf.sampling import pick_tokens, seed_keys

log = logging.getLogger(__name__)


@dataclass
class DecodeOptions:
    """How rows are batched (HFBackend's arguments of the same names); read at every call."""

    batch_size: int | None = None  # most rows at a time (None: no limit but the tokens)
    max_batch_tokens: int = 16384  # rows x (width + most steps left) at most
    refill: bool = True  # rows join a running batch
    kv_room: bool = True  # KV buffers with room for the steps to come
    share_samples: bool = True  # a request's samples share a row while their tokens agree
    isolate_requests: bool = False  # a batch never mixes requests


class Forward(Protocol):
    """The model side of decoding."""

    device: torch.device
    pad_id: int
    eos: torch.Tensor  # int64 [k]: the ids that end a row
    noise_dtype: torch.dtype

    def prefill(self, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor, object | None]:
        """Each row's prompt laid out (ids and attention mask, left-padded to one width), and the
        KV cache of every column but the last (None: nothing cached)."""

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, cache) -> tuple[torch.Tensor, object]:
        """One step: the last column of `ids` fed on `cache`; float32 scores [rows, vocab] and the cache."""

    def stops(self, setting: Settings) -> tuple[str, ...]:
        """The stop strings of rows with `setting`."""

    def stopped(self, ids: torch.Tensor, stops: tuple[str, ...]) -> torch.Tensor:
        """Which rows of `ids` end with one of `stops`: bool [rows]."""

    def free_memory(self) -> None:
        """Give back what an out-of-memory error left behind."""


class Scheduler:
    """Decodes rows with a `Forward` under `options`."""

    def __init__(self, model: Forward, options: DecodeOptions):
        self.model = model
        self.options = options

    def stream(self, rows: list[Row], settings: dict[int, Settings]) -> Iterator[tuple[Row, list[int]]]:
        """Decode `rows` (sorted, rows sharing a prefix together) and yield each row's generated
        ids as soon as it ends. Out of memory: the rows in flight start again, half as many at a time."""
        queue = deque(rows)
        most_rows = self.options.batch_size or len(rows)
        while queue:
            flight: list[Row] = []
            try:
                yield from self.decode(queue, flight, settings, most_rows)
            except out_of_memory(torch):
                if len(flight) <= 1:
                    raise
                log.warning("out of memory with %d rows in flight: starting them again, %d at a time", len(flight), len(flight) // 2)
                queue.extendleft(reversed(flight))
                most_rows = len(flight) // 2
                self.model.free_memory()

    def decode(self, queue: deque[Row], flight: list[Row], settings: dict[int, Settings], most_rows: int):
        """Greedy (or seeded) decoding with `generate(do_sample=False)`'s EOS and stop-string rules,
        continuously batched: a row leaves the batch when it ends, and rows waiting in `queue` join
        as soon as a quarter of the batch (within `most_rows` and `max_batch_tokens`) is free
        (`refill`), rather than the batch running on with its last few rows. Rows joining are
        prefilled on their own, then their KV cache is stacked with the running rows'.

        With `share_samples`, a request's samples start as one batch row; when their tokens part,
        each new group forks off with a copy of the row's KV and waits in `forks` to join the
        batch with the next rows admitted. `flight` holds the samples admitted and not yet
        yielded. Yields (sample, generated ids, EOS or stop token included)."""
        batch: Decoding | None = None
        forks: list[Decoding] = []
        while queue or flight:
            wave = self.next_wave(queue, batch, forks, len(flight), settings, most_rows)
            if wave is not None:
                flight += wave
                batch = self.admit(batch, forks, wave, settings)
                forks = []
            ended, fork = self.step(batch)
            finished = [(batch, k) for k in ended]
            if fork is not None:
                finished += [(fork, k) for k in fork.done.nonzero().flatten().tolist()]
            for part, k in finished:
                for row in part.rows[k]:
                    flight.remove(row)
                    yield row, part.generated[k]
            if fork is not None and fork.live():
                if fork.cache is not None:
                    self.keep(fork, fork.live())
                    forks.append(fork)
                else:  # this model's cache cannot take rows: such samples start again, each on its own
                    self.options.share_samples = False
                    for k in fork.live():
                        for row in fork.rows[k]:
                            flight.remove(row)
                            queue.appendleft(replace(row, alone=True))
            live = batch.live()
            if not live:
                batch = None
            elif len(live) * 4 <= len(batch.rows) * 3 and hasattr(batch.cache, "batch_select_indices"):
                # Rows leave in groups, as each drop copies the cache. (Caches that cannot drop rows keep them.)
                self.keep(batch, live)

    def next_wave(
        self, queue: deque[Row], batch: Decoding | None, forks: list[Decoding], flying: int, settings, most_rows: int
    ) -> list[Row] | None:
        """The rows of `queue` to admit now with the `forks` waiting (taken from it), or None for
        not yet: as many as fit beside the `flying` samples in flight (each counted as a row of its
        own, as it may fork into one), if these and the forks are a quarter of the batch or all
        that is left; none while a batch that cannot take rows (no `refill`, isolated requests, a
        cache that cannot be stacked) still runs."""
        options = self.options
        live = len(batch.live()) if batch is not None else 0
        if live and not (self.refills and decode_cache.plain(batch.cache)):
            return None
        # The forks waiting join with this wave: the batch is as wide, and runs as long, as they are too.
        running = ([batch] if live else []) + forks
        width = max((part.ids.shape[1] for part in running), default=0)
        remaining = max((part.remaining() for part in running), default=0)
        head = tail = new = take = 0
        joining: set = set()  # the batch rows the taken samples start as
        for row in queue:
            if options.isolate_requests and take and row.request != queue[0].request:
                break
            wider_head, wider_tail = max(head, row.prefix), max(tail, len(row.prompt) - row.prefix)
            more = max(new, settings[row.request].max_new_tokens)
            rows = flying + take + 1
            tokens = rows * (max(width, wider_head + wider_tail) + max(remaining, more))
            if rows > 1 and (rows > most_rows or tokens > options.max_batch_tokens):
                break  # the first row of an empty batch always goes
            head, tail, new, take = wider_head, wider_tail, more, take + 1
            joining.add(self.batch_row_of(row))
        waiting = len(joining) + sum(len(fork.rows) for fork in forks)
        if not waiting or (live and waiting * 4 < live + waiting and not 0 < take == len(queue)):
            return None
        return [queue.popleft() for _ in range(take)]

    @property
    def refills(self) -> bool:
        """Whether rows may join a running batch (forks of shared samples among them)."""
        return self.options.refill and not self.options.isolate_requests

    def batch_row_of(self, row: Row) -> object:
        """What a sample starts as: its request's batch row (`share_samples`) or one of its own."""
        shared = self.options.share_samples and self.refills and not row.alone
        return row.request if shared else (row.request, row.sample)

    def admit(self, batch: Decoding | None, forks: list[Decoding], wave: list[Row], settings: dict[int, Settings]) -> Decoding:
        """The running batch's live rows, the `forks` and `wave`, prefilled, in one batch."""
        parts = list(forks)
        if wave:
            arrived = self.start_wave(wave, settings)
            if batch is None and not forks and not decode_cache.plain(arrived.cache):
                return arrived  # nothing cached yet, or the model's own kind: decoded as it is
            parts.append(arrived)
        if batch is not None:  # `next_wave` admits rows beside running ones only when their cache is plain
            self.keep(batch, batch.live())
            parts.insert(0, batch)
        if len(parts) == 1 and not self.options.kv_room:
            return parts[0]
        joined = Decoding.stack(parts, self.model.pad_id)
        room = joined.remaining() if self.options.kv_room else None
        joined.cache = decode_cache.join([(part.cache, len(part.rows)) for part in parts], room)
        return joined

    def start_wave(self, wave: list[Row], settings: dict[int, Settings]) -> Decoding:
        """`wave`'s rows with their prompts prefilled (all but each prompt's last token), a
        request's samples in one batch row (`share_samples`)."""
        grouped: dict[object, list[Row]] = {}
        for row in wave:
            grouped.setdefault(self.batch_row_of(row), []).append(row)
        rows = list(grouped.values())
        firsts = [members[0] for members in rows]
        with torch.inference_mode():
            ids, mask, cache = self.model.prefill(firsts)
        row_settings = [settings[row.request] for row in firsts]
        device = self.model.device
        return Decoding(
            rows=rows,
            ids=ids,
            mask=mask,
            cache=cache,
            steps=torch.zeros(len(rows), dtype=torch.long, device=device),
            limits=torch.tensor([s.max_new_tokens for s in row_settings], device=device),
            sampling=[(s.temperature, s.top_k, s.top_p) for s in row_settings],
            stops=[self.model.stops(s) for s in row_settings],
            done=torch.zeros(len(rows), dtype=torch.bool, device=device),
            generated=[[] for _ in rows],
        )

    def step(self, batch: Decoding) -> tuple[list[int], Decoding | None]:
        """One decoding step for every row of `batch`: the rows that ended with it, and the
        samples whose tokens parted from their row's, forked off as rows of their own (None if none)."""
        with torch.inference_mode():
            scores, batch.cache = self.model.forward(batch.ids, batch.mask, batch.cache)
            tokens, parted = self.pick(batch, scores)
            batch.ids = torch.cat([batch.ids, tokens[:, None]], dim=-1)
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=-1)
            batch.steps += 1
            finished = self.finished(batch, tokens)
            values = tokens.tolist()
            for k in (~batch.done).nonzero().flatten().tolist():
                batch.generated[k].append(values[k])
            fork = self.fork(batch, parted) if parted else None
            ended = (finished & ~batch.done).nonzero().flatten().tolist()
            batch.done |= finished
        return ended, fork

    def pick(self, batch: Decoding, scores) -> tuple[torch.Tensor, list[tuple[int, int, list[Row]]]]:
        """Each batch row's next token, drawn for each of its samples (with the sample's own key);
        the samples whose draw differs from their row's first sample's, as (row, token, samples)."""
        device, noise = self.model.device, self.model.noise_dtype
        if not any(setting[0] > 0 for setting in batch.sampling):
            return scores.argmax(-1), []
        flat = [row for members in batch.rows for row in members]
        keys = seed_keys(torch, [row.seed for row in flat], device)
        if len(flat) == len(batch.rows):
            return pick_tokens(torch, scores, keys, batch.steps, batch.sampling, noise), []
        owners = [k for k, members in enumerate(batch.rows) for _ in members]
        owner = torch.tensor(owners, device=device)
        drawn = pick_tokens(torch, scores[owner], keys, batch.steps[owner], [batch.sampling[k] for k in owners], noise)
        values = drawn.tolist()
        tokens, parted, first = [], [], 0
        for k, members in enumerate(batch.rows):
            mine = values[first : first + len(members)]
            first += len(members)
            tokens.append(mine[0])
            if len(set(mine)) > 1 and not batch.done[k]:
                groups: dict[int, list[Row]] = {}
                for row, token in zip(members, mine):
                    groups.setdefault(token, []).append(row)
                batch.rows[k] = groups.pop(mine[0])
                parted += [(k, token, rows) for token, rows in groups.items()]
        return torch.tensor(tokens, device=device), parted

    def finished(self, batch: Decoding, tokens: torch.Tensor) -> torch.Tensor:
        """Which rows end with `tokens` (just appended to `batch.ids`): EOS, their token limit, a stop string."""
        finished = torch.isin(tokens, self.model.eos) | (batch.steps >= batch.limits)
        for stops, index in batch.stop_members().items():
            if index is None:
                finished |= self.model.stopped(batch.ids, stops)
            else:
                finished[index] |= self.model.stopped(batch.ids[index], stops)
        return finished

    def fork(self, batch: Decoding, parted: list[tuple[int, int, list[Row]]]) -> Decoding:
        """The `parted` samples as rows of their own, each a copy of its batch row (KV cache
        included, when the cache can be stacked; else None) but for its last token."""
        device = self.model.device
        parents = [k for k, _, _ in parted]
        index = torch.tensor(parents, device=device)
        tokens = torch.tensor([token for _, token, _ in parted], device=device)
        ids = batch.ids[index]
        ids[:, -1] = tokens
        fork = Decoding(
            rows=[rows for _, _, rows in parted],
            ids=ids,
            mask=batch.mask[index],
            cache=decode_cache.take(batch.cache, index) if decode_cache.plain(batch.cache) else None,
            steps=batch.steps[index],
            limits=batch.limits[index],
            sampling=[batch.sampling[k] for k in parents],
            stops=[batch.stops[k] for k in parents],
            done=torch.zeros(len(parted), dtype=torch.bool, device=device),
            generated=[batch.generated[k][:-1] + [token] for k, token, _ in parted],
        )
        fork.done = self.finished(fork, tokens)
        return fork

    def keep(self, batch: Decoding, keep: list[int]) -> None:
        """Only rows `keep` of `batch` go on; columns that are padding for all of them go."""
        if len(keep) < len(batch.rows):
            index = torch.tensor(keep, device=self.model.device)
            if batch.cache is not None:
                batch.cache.batch_select_indices(index)
            batch.select(keep, index)
        first = int(batch.mask.argmax(-1).min())  # each row's first real column
        if first and decode_cache.plain(batch.cache):
            batch.ids, batch.mask = batch.ids[:, first:], batch.mask[:, first:]
            decode_cache.trim(batch.cache, first)
