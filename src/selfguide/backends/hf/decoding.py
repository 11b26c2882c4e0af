"""A batch being decoded: its rows, their layouts and tokens so far, and their KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfguide.backends.hf.rows import Row


@dataclass
class Decoding:
    """A batch being decoded, one entry (or tensor row) per batch row. A batch row stands for one
    or more samples of one request (`rows[k]`, see `share_samples`) whose tokens agree so far.
    `ids` and `mask` are the rows' prompt layouts and generated tokens, left-padded to one width;
    `cache` holds the KV of every column but the last, which the next step feeds. Rows that ended
    stay (`done`) until the batch drops them."""

    rows: list[list[Row]]
    ids: object  # int64 [rows, width]
    mask: object  # int64 [rows, width]
    cache: object | None
    steps: object  # int64 [rows]: tokens generated so far
    limits: object  # int64 [rows]: max_new_tokens
    sampling: list[tuple[float, int, float]]
    stops: list[tuple[str, ...]]
    done: object  # bool [rows]
    generated: list[list[int]]
    _members: dict | None = None

    def live(self) -> list[int]:
        return (~self.done).nonzero().flatten().tolist()

    def remaining(self) -> int:
        """The most steps a live row may still take."""
        return int((self.limits - self.steps).masked_fill(self.done, 0).max())

    def stop_members(self) -> dict[tuple[str, ...], object]:
        """Each distinct non-empty stop tuple, with the batch rows it covers (None: all)."""
        if self._members is None:
            covered: dict[tuple[str, ...], list[int]] = {}
            for k, stops in enumerate(self.stops):
                if stops:
                    covered.setdefault(stops, []).append(k)
            every = len(self.rows)
            self._members = {
                s: None if len(ks) == every else self.ids.new_tensor(ks) for s, ks in covered.items()
            }
        return self._members

    def select(self, keep: list[int], index) -> None:
        """Only rows `keep` (`index`, the same as a tensor) go on; the cache is the caller's."""
        self.rows = [self.rows[k] for k in keep]
        self.sampling = [self.sampling[k] for k in keep]
        self.stops = [self.stops[k] for k in keep]
        self.generated = [self.generated[k] for k in keep]
        for name in ("ids", "mask", "steps", "limits", "done"):
            setattr(self, name, getattr(self, name)[index])
        self._members = None

    @staticmethod
    def stack(parts: list[Decoding], pad_id: int) -> Decoding:
        """`parts`' rows in order, the ids and mask right-aligned to the widest (the caches are
        stacked by the caller)."""
        width = max(part.ids.shape[1] for part in parts)

        def left_padded(name, value):
            return torch.cat(
                [torch.nn.functional.pad(getattr(p, name), (width - p.ids.shape[1], 0), value=value) for p in parts]
            )

        return Decoding(
            rows=[row for part in parts for row in part.rows],
            ids=left_padded("ids", pad_id),
            mask=left_padded("mask", 0),
            cache=None,
            steps=torch.cat([part.steps for part in parts]),
            limits=torch.cat([part.limits for part in parts]),
            sampling=[s for part in parts for s in part.sampling],
            stops=[s for part in parts for s in part.stops],
            done=torch.cat([part.done for part in parts]),
            generated=[g for part in parts for g in part.generated],
        )
