"""Prefill: the KV cache of a batch's prompts, each distinct prompt once, shared prefixes once per call.

The `n` samples of one prompt share one prefill: the batch's distinct prompts (all but the last
token) go through one forward pass, and the KV cache is expanded to the rows by index. Prompts
that share a long token prefix (prefixes.py) share its KV cache too: each prefix is computed
once (alone, no padding) and copied into every batch that needs it. A batch lays each distinct
prompt out as [pad, shared prefix, pad, rest of the prompt] with the prefixes right-aligned in
the first columns and the rests in the last ones; position ids follow the attention mask, so
the padding in the middle changes nothing but float rounding. Only the rests are prefilled.
"""

from __future__ import annotations

import logging

import torch

from selfguide.backends.hf.masks import Masks
from selfguide.backends.hf.rows import Row

log = logging.getLogger(__name__)


class Prefill:
    """Prefills prompts on `model` (a transformers causal LM)."""

    def __init__(self, model, masks: Masks, device, pad_id: int, cache_name: str, logits_to_keep: bool, share_prefill: bool, reuse_prefix: bool):
        self.model = model
        self.masks = masks
        self.device = device
        self.pad_id = pad_id
        self.cache_name = cache_name  # forward's keyword for the KV cache
        self.extra = {"logits_to_keep": 1} if logits_to_keep else {}  # a prefill needs no logits but the last
        self.share_prefill = share_prefill
        self.reuse_prefix = reuse_prefix
        self.prefix_kv: dict[tuple[int, ...], list] = {}  # shared prefix -> per-layer (keys, values)

    def rows(self, rows: list[Row]):
        """Each row's prompt laid out, and the KV cache of all but its last column (None for
        one-token prompts): shared per distinct prompt, or else each row its own."""
        prompts, prompt_ids, prompt_mask, select = self.distinct_prompts(rows)
        ids, mask = prompt_ids[select], prompt_mask[select]
        cache = None
        if prompt_ids.shape[1] >= 2 and self.share_prefill:
            cache = self.shared(prompts, prompt_ids, prompt_mask, select)
        if prompt_ids.shape[1] >= 2 and cache is None:  # every row its own prefill
            positions = (mask[:, :-1].cumsum(-1) - 1).clamp_(min=0)
            out = self.model(
                input_ids=ids[:, :-1],
                attention_mask=self.masks(mask[:, :-1], ids.shape[1] - 1),
                position_ids=positions,
                **{self.cache_name: self.masks.cache()},
                use_cache=True,
                **self.extra,
            )
            cache = getattr(out, self.cache_name)
        return ids, mask, cache

    def distinct_prompts(self, batch: list[Row]):
        """The batch's distinct prompts (with their shared-prefix lengths), their `layout`, and
        the index of each row's prompt in it."""
        distinct: dict[tuple[int, ...], int] = {}
        for row in batch:
            distinct.setdefault(row.prompt, row.prefix)
        prompts = list(distinct.items())
        ids, mask = self.layout(prompts)
        position = {prompt: k for k, (prompt, _) in enumerate(prompts)}
        select = torch.tensor([position[row.prompt] for row in batch], dtype=torch.long, device=self.device)
        return prompts, ids, mask, select

    def layout(self, prompts: list[tuple[tuple[int, ...], int]]):
        """Token ids and attention mask of (prompt, shared-prefix length) pairs, each laid out as
        [pad, prefix, pad, rest]: prefixes right-aligned in the first columns, rests in the last.
        Without shared prefixes this is plain left padding."""
        head = max(prefix for _, prefix in prompts)
        width = head + max(len(prompt) - prefix for prompt, prefix in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for k, (prompt, prefix) in enumerate(prompts):
            for end, part in ((head, prompt[:prefix]), (width, prompt[prefix:])):
                if part:
                    ids[k, end - len(part) : end] = torch.tensor(part, dtype=torch.long)
                    mask[k, end - len(part) : end] = 1
        return ids.to(self.device), mask.to(self.device)

    def shared(self, prompts, prompt_ids, prompt_mask, select):
        """KV cache of every distinct prompt but its last token, expanded to the batch's rows.
        Shared prefixes come from `prefix_cache`; only the rest of each prompt runs here."""
        head = max(prefix for _, prefix in prompts)
        ids, mask = prompt_ids[:, :-1], prompt_mask[:, :-1]
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        cache, start = None, 0
        if head and self.reuse_prefix:
            try:
                cache, start = self.prefix_cache(prompts, head), head
            except (TypeError, ValueError, AttributeError, NotImplementedError) as err:
                log.warning("prefix reuse is not supported by this model (%s): prefilling whole prompts", err)
                self.reuse_prefix = False
                self.prefix_kv.clear()
        try:
            if ids.shape[1] > start:
                outputs = self.model(
                    input_ids=ids[:, start:],
                    attention_mask=self.masks(mask, ids.shape[1] - start),
                    position_ids=positions[:, start:],
                    **{self.cache_name: cache if cache is not None else self.masks.cache()},
                    use_cache=True,
                    **self.extra,
                )
                cache = getattr(outputs, self.cache_name)
                del outputs
            if cache is None or not hasattr(cache, "batch_select_indices"):
                raise TypeError(f"no expandable KV cache ({type(cache).__name__})")
            if select.shape[0] != ids.shape[0] or not bool((select == torch.arange(ids.shape[0], device=select.device)).all()):
                cache.batch_select_indices(select)
            return cache
        except (TypeError, ValueError, AttributeError, NotImplementedError) as err:
            log.warning("shared prefill is not supported by this model (%s): expanding rows instead", err)
            self.share_prefill = False
            return None

    def prefix_cache(self, prompts: list[tuple[tuple[int, ...], int]], head: int):
        """A KV cache of `head` columns holding each distinct prompt's shared prefix right-aligned
        (zeros, masked out, before it; all zeros for a prompt without one). Each prefix is
        computed once, alone, and kept while consecutive batches need it."""
        from transformers import DynamicCache

        needed = {prompt[:prefix] for prompt, prefix in prompts if prefix}
        for stale in self.prefix_kv.keys() - needed:  # rows come sorted by prefix: never needed again
            del self.prefix_kv[stale]
        for prefix in needed - self.prefix_kv.keys():
            ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
            whole = self.masks(torch.ones_like(ids), len(prefix))
            out = self.model(input_ids=ids, attention_mask=whole, **{self.cache_name: self.masks.cache()}, use_cache=True, **self.extra)
            cache = getattr(out, self.cache_name)
            kinds = {type(layer).__name__ for layer in getattr(cache, "layers", None) or ()}
            if kinds != {"DynamicLayer"}:
                raise TypeError(f"prefix reuse needs full-length cache layers (DynamicLayer), got {', '.join(sorted(kinds)) or type(cache).__name__}")
            self.prefix_kv[prefix] = [(layer.keys, layer.values) for layer in cache.layers]
        # Per layer: the batch's prefixes left-padded to `head` (slot 0: none), then one per prompt;
        # a view when all prompts share one prefix, as the cache copies it on its first update.
        order = sorted(needed)
        slots = [order.index(prompt[:prefix]) + 1 if prefix else 0 for prompt, prefix in prompts]
        data = []
        for layer in range(len(self.prefix_kv[order[0]])):
            pair = []
            for part in (0, 1):  # keys, values
                padded = [torch.nn.functional.pad(self.prefix_kv[x][layer][part], (0, 0, head - len(x), 0)) for x in order]
                stacked = torch.cat([torch.zeros_like(padded[0]), *padded])
                if len(set(slots)) == 1:
                    pair.append(stacked[slots[0] : slots[0] + 1].expand(len(prompts), -1, -1, -1))
                else:
                    pair.append(stacked[torch.tensor(slots, device=stacked.device)])
            data.append(tuple(pair))
        return DynamicCache(data)
