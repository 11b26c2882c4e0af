"""Shared-prefix batches: B rows that start with the same tokens train as ONE packed sequence.

Every row of a SELF-GUIDE task is the same long task prompt (instruction and every demo) followed
by a short input and answer, so a padded batch of B rows runs that prompt B times. Packed, a step
is `[P, s_1, ..., s_B]`: the common prefix P once, then each row's remainder s_i. A 4D attention
mask lets each remainder see all of P and causally its own tokens, never another remainder's;
its position ids continue from len(P), as if s_i followed P alone. So every token gets the same
hidden states as in row i on its own, and the loss and gradients equal those of the padded batch
(with LoRA dropout, up to the random masks, which are drawn per packed token).

P stops at least one token before the first answer token of every row: then the last token of P
predicts a prompt token in every row, and each packed position predicts at most one token, the
next one in its own remainder. The labels keep the usual causal-LM layout (the target of position
t is labels[t + 1]): the first token of every remainder is a prompt token (-100), so no position
is ever trained to predict the next remainder's start.

transformers (5.x) passes a 4D `attention_mask` through `create_causal_mask` as-is, to whichever
attention the model uses. sdpa takes a boolean mask (True = may attend) for any query dtype; the
eager attention adds the mask to its scores, so it needs an additive one (`attention_mask_for`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

IGNORE = -100


def shared_prefix_length(input_ids: Sequence[Sequence[int]], answer_starts: Sequence[int]) -> int:
    """Length of the longest common token prefix of the rows, cut to end before every row's last
    prompt token (`answer_starts`: the index of each row's first answer token), so that the prefix
    never predicts an answer token."""
    first = input_ids[0]
    limit = min(answer_starts) - 1
    length = 0
    while length < limit and all(row[length] == first[length] for row in input_ids):
        length += 1
    return length


def useful_shared_prefix(rows: Sequence[dict]) -> bool:
    """Whether most training rows share a prefix worth packing: at least half the mean row length.

    True for SELF-GUIDE task rows (the task prompt is most of every row), also when a few rows
    differ (a demo trained on is prompted without itself: each batch packs around its own common
    prefix); false for rows that carry their own instruction, whose common prefix is at most a chat
    template's header.
    """
    if len(rows) < 2:
        return False
    ids = [row["input_ids"] for row in rows]
    answer_starts = [row["completion_mask"].count(0) for row in rows]  # the mask is 0 over the prompt, then 1
    mean_length = sum(len(row) for row in ids) / len(ids)
    head = max(1, int(mean_length / 2))
    eligible = [row for row, start in zip(ids, answer_starts, strict=True) if start - 1 >= head]
    groups = Counter(tuple(row[:head]) for row in eligible)
    return bool(groups) and groups.most_common(1)[0][1] * 2 >= len(rows)


def pack_shared_prefix(examples: Sequence[dict]) -> dict | None:
    """One packed sequence `[P, s_1, ..., s_B]` for rows with `input_ids` and `labels` (-100 off the
    answer), or None when the rows share no prefix.

    Returns tensors of batch size 1: `input_ids` and `labels` of the packed length L, `position_ids`,
    a boolean `attention_mask` of shape (1, 1, L, L), and `row_tokens`, the summed row lengths (the
    tokens a padded batch of the rows would train on, without padding).
    """
    import torch

    ids = [list(example["input_ids"]) for example in examples]
    labels = [list(example["labels"]) for example in examples]
    prefix = shared_prefix_length(ids, [_first_answer_index(row) for row in labels])
    if prefix == 0:
        return None
    suffix_lengths = [len(row) - prefix for row in ids]
    packed_ids = ids[0][:prefix] + [token for row in ids for token in row[prefix:]]
    packed_labels = [IGNORE] * prefix + [label for row in labels for label in row[prefix:]]
    positions = list(range(prefix)) + [prefix + i for n in suffix_lengths for i in range(n)]

    length = len(packed_ids)
    # segment: 0 for the tokens of P, i for those of s_i. A token attends to itself and to the
    # earlier tokens of P and of its own segment.
    segment = torch.repeat_interleave(torch.arange(len(ids) + 1), torch.tensor([prefix, *suffix_lengths]))
    index = torch.arange(length)
    causal = index[:, None] >= index[None, :]
    visible = (segment[:, None] == segment[None, :]) | (segment[None, :] == 0)
    return {
        "input_ids": torch.tensor([packed_ids]),
        "labels": torch.tensor([packed_labels]),
        "position_ids": torch.tensor([positions]),
        "attention_mask": (causal & visible)[None, None],
        "row_tokens": torch.tensor(sum(len(row) for row in ids)),
    }


def shared_prefix_collator(padded_collator: Callable[[list[dict]], dict]) -> Callable[[list[dict]], dict]:
    """A data collator packing each batch around its shared prefix; batches of one row, or of rows
    with nothing in common, go to `padded_collator` (TRL's) unchanged."""

    def collate(examples: list[dict]) -> dict:
        packed = pack_shared_prefix(examples) if len(examples) > 1 else None
        return packed if packed is not None else padded_collator(examples)

    return collate


def attention_mask_for(mask, attn_implementation: str):
    """The packed batch's boolean 4D mask as the model's attention takes it: as-is for sdpa; else
    (eager) additive, 0 where allowed and the lowest fp32 value elsewhere (added to bf16 scores
    too, it promotes them to fp32, where the eager softmax runs anyway)."""
    import torch

    if attn_implementation == "sdpa":
        return mask
    return torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, torch.finfo(torch.float32).min)


def _first_answer_index(row_labels: Sequence[int]) -> int:
    return next((i for i, label in enumerate(row_labels) if label != IGNORE), len(row_labels))
