"""The KV cache of a batch being decoded: room to grow in place, rows that join and leave.

* Room. transformers' DynamicLayer appends each step's keys and values with `torch.cat`, which
  copies the whole cache every step: on a CPU that copy was half of a decode step at 50 rows x
  700 tokens (SmolLM2-135M). A `RoomyLayer` keeps its keys and values as the first columns of
  larger buffers: a step writes its column in place, and attention sees the same values, so the
  outputs are bit-identical.
* Joining. `join` stacks the caches of row groups of different widths into one, each group
  right-aligned (left-padded with zeros, which the attention mask hides), as the decoder lays out
  prompts: new rows join a batch that is still decoding (backends/hf/scheduler.py, refill).
* Leaving. `RoomyLayer.batch_select_indices` keeps some rows; `trim` drops leading columns that
  are padding for every row left.
* Forking. `take` copies some rows out, for samples whose tokens parted from their row's.

Imported lazily by backends/hf/: it needs torch and transformers.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class RoomyLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are the first `length` columns of larger buffers."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self._keys, self._values, self._length = keys, values, length
        self._show()

    def _show(self) -> None:
        self.keys = self._keys[:, :, : self._length]
        self.values = self._values[:, :, : self._length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self._length + key_states.shape[-2]
        if end > self._keys.shape[-2]:  # more steps than reserved: grow by half again
            room = end - self._length + self._length // 2
            self._keys, self._values = _with_room(self.keys, room), _with_room(self.values, room)
        self._keys[:, :, self._length : end] = key_states
        self._values[:, :, self._length : end] = value_states
        self._length = end
        self._show()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys, self._values = self._keys[indices], self._values[indices]
        self._show()

    def trim(self, columns: int) -> None:
        """Drop the first `columns` columns (a view: no copy)."""
        self._keys, self._values = self._keys[:, :, columns:], self._values[:, :, columns:]
        self._length -= columns
        self._show()


def _with_room(states: torch.Tensor, room: int) -> torch.Tensor:
    batch, heads, length, dim = states.shape
    buffer = states.new_empty(batch, heads, length + room, dim)
    buffer[:, :, :length] = states
    return buffer


def plain(cache) -> bool:
    """Whether every layer is a filled DynamicLayer (or ours): what `join` handles. Not so for
    transformers' sliding-window, quantised or hybrid caches (sliding-window models decode on
    plain caches with masks by position instead: backends/hf/masks.py)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, RoomyLayer) and layer.is_initialized for layer in layers)


def join(parts: list[tuple[object | None, int]], room: int | None):
    """One cache for the row groups `parts` (cache, rows), stacked in order, each right-aligned to
    the widest. A part whose cache is None holds rows with nothing cached yet (all padding). With
    `room` None the layers are plain DynamicLayers, else RoomyLayers with `room` spare columns.
    None when no part has a cache."""
    caches = [cache for cache, _ in parts if cache is not None]
    if not caches:
        return None
    if not all(plain(cache) for cache in caches):
        raise TypeError(f"only plain DynamicCaches can be joined, got {type(caches[0]).__name__}")
    width = max(cache.get_seq_length() for cache in caches)
    layers = []
    for index, model_layer in enumerate(caches[0].layers):
        pair = []
        for name in ("keys", "values"):
            like = getattr(model_layer, name)
            batch = sum(rows for _, rows in parts)
            buffer = like.new_empty(batch, like.shape[1], width + (room or 0), like.shape[3])
            first = 0
            for cache, rows in parts:  # padding is zeros (masked out, but must be finite); the room stays unset
                filled = getattr(cache.layers[index], name) if cache is not None else None
                start = width - (filled.shape[-2] if filled is not None else 0)
                buffer[first : first + rows, :, :start] = 0
                if filled is not None:
                    buffer[first : first + rows, :, start:width] = filled
                first += rows
            pair.append(buffer)
        layers.append(pair)
    cache = DynamicCache()
    cache.layers = [RoomyLayer(keys, values, width) if room is not None else _dynamic(keys, values) for keys, values in layers]
    return cache


def _dynamic(keys: torch.Tensor, values: torch.Tensor) -> DynamicLayer:
    layer = DynamicLayer()
    layer.lazy_initialization(keys, values)
    layer.keys, layer.values = keys, values
    return layer


def take(cache, index: torch.Tensor):
    """A new plain cache holding copies of rows `index` of `cache` (a plain one)."""
    copy = DynamicCache()
    copy.layers = [_dynamic(layer.keys[index], layer.values[index]) for layer in cache.layers]
    return copy


def trim(cache, columns: int) -> None:
    """Drop the first `columns` columns of every layer (padding for every row left)."""
    if columns <= 0 or cache is None:
        return
    for index, layer in enumerate(cache.layers):
        if isinstance(layer, RoomyLayer):
            layer.trim(columns)
        else:
            layer.keys, layer.values = layer.keys[:, :, columns:], layer.values[:, :, columns:]
