"""Attention masks by token position, so that sliding-window layers (Gemma 2/3, Mistral, Qwen's
sliding layers) keep every column of a plain KV cache and still see exactly their window.

transformers' own sliding-window caches keep only the last `window - 1` columns and mask by
column: right for plain left padding, wrong for the decoder's layouts with padding in the
middle ([pad, shared prefix, pad, rest]), and their layers cannot be joined, forked or given
room. Here every layer caches every column (a plain DynamicCache), and a sliding layer's mask
lets a token see the keys whose *positions* (from the attention mask, as the position ids are)
lie within the window: the same keys as the model's own cache on a left-padded row, whatever
the layout. The mask is built by transformers' own mask functions, for its sdpa and eager
attention; other attention kernels (flash) take the window by column, so such a model keeps
its own caches and decodes without prefix reuse, joining and forking (`Masks.unsupported`).
"""

from __future__ import annotations

import torch

POSITION_MASKED = ("sdpa", "eager")  # the attention implementations that take a 4D mask we build


class Masks:
    """The `attention_mask` argument of the model's forward: the 2D padding mask as it is for a
    model without sliding-window layers, else 4D masks by position (one per layer type)."""

    def __init__(self, model):
        from transformers.cache_utils import get_layer_types_and_kwargs

        config = model.config.get_text_config(decoder=True)
        types, kwargs = get_layer_types_and_kwargs(config)
        windows = {k["sliding_window"] for t, k in zip(types, kwargs) if t == "sliding_attention"}
        self.config = config
        self.dtype = model.dtype
        self.window: int | None = None  # the sliding layers' window, when masked by position here
        self.hybrid = "full_attention" in types  # a mask per layer type, as a dict
        self.unsupported: str | None = None  # why this model keeps its own caches (None: it need not)
        others = sorted(set(types) - {"full_attention", "sliding_attention"})
        attention = config._attn_implementation
        if not windows:
            self.unsupported = f"its {', '.join(others)} layers need their own caches" if others else None
        elif others:
            self.unsupported = f"its {', '.join(others)} layers need their own caches"
        elif len(windows) > 1:
            self.unsupported = f"its sliding layers have different windows ({sorted(windows)})"
        elif attention not in POSITION_MASKED:
            self.unsupported = f"its sliding-window layers run {attention} attention, which windows by column (sdpa or eager would not)"
        else:
            self.window = windows.pop()

    def cache(self):
        """A cache for the model to fill: a plain one (every column of every layer) for a model
        masked by position, else None (the model's own)."""
        from transformers import DynamicCache

        return DynamicCache() if self.window is not None else None

    def __call__(self, mask: torch.Tensor, q_length: int):
        """The masks of a forward feeding the last `q_length` of the columns `mask` covers (the
        columns before them cached)."""
        if self.window is None:
            return mask
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, and_masks, causal_mask_function

        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        window = self.window

        def within_window(batch, head, q, kv):
            return positions[batch, q] - positions[batch, kv] < window

        build = ALL_MASK_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        kv_length = mask.shape[-1]
        common = dict(
            batch_size=mask.shape[0],
            q_length=q_length,
            kv_length=kv_length,
            q_offset=kv_length - q_length,
            kv_offset=0,
            attention_mask=mask.bool(),
            dtype=self.dtype,
            config=self.config,
            use_vmap=False,
            device=mask.device,
        )
        # A full mask may be skipped where it is plainly causal, as transformers does; a window may not.
        sliding = build(mask_function=and_masks(causal_mask_function, within_window), allow_is_causal_skip=False, **common)
        if not self.hybrid:
            return sliding
        return {"full_attention": build(mask_function=causal_mask_function, **common), "sliding_attention": sliding}
