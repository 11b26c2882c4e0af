"""Which leading tokens of each prompt come from a KV cache shared with other prompts.

Every annotation or evaluation prompt of one task holds the instruction and all demos before
its input: prompts that share a long token prefix share its KV cache, computed once (see
prefill.py).
"""

from __future__ import annotations

from collections.abc import Iterable


def shared_prefixes(prompts: Iterable[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
    """For each distinct prompt, how many of its leading tokens come from a prefix KV cache it
    shares with other prompts (0: none).

    Sorted by token ids, prompts that share a prefix are neighbours, and a run of k of them whose
    common prefix is p tokens long saves (k - 1) * p tokens of prefill. The runs are chosen to
    save the most: a run is split at its weakest link (the shortest common prefix of two
    neighbours) whenever its two halves save more apart. A prefix always leaves at least one
    token of each prompt, whose logits start generation."""
    ordered = sorted(set(prompts))
    lengths = dict.fromkeys(ordered, 0)
    links = [min(_common_length(a, b), len(a) - 1, len(b) - 1) for a, b in zip(ordered, ordered[1:])]
    if not links:
        return lengths
    best: dict[tuple[int, int], tuple[int, list[tuple[int, int, int]]]] = {}  # range -> (saving, runs)
    stack = [(0, len(ordered) - 1, False)]
    while stack:  # post-order over the ranges, without recursion (a chain of prompts can be long)
        first, last, children_done = stack.pop()
        if first == last:
            best[first, last] = (0, [])
            continue
        cut = min(range(first, last), key=links.__getitem__)
        if not children_done:
            stack += [(first, last, True), (first, cut, False), (cut + 1, last, False)]
            continue
        left, right = best.pop((first, cut)), best.pop((cut + 1, last))
        whole = (last - first) * links[cut]
        if whole > 0 and whole >= left[0] + right[0]:
            best[first, last] = (whole, [(first, last, links[cut])])
        else:
            best[first, last] = (left[0] + right[0], left[1] + right[1])
    for first, last, length in best[0, len(ordered) - 1][1]:
        for k in range(first, last + 1):
            lengths[ordered[k]] = length
    return lengths


def _common_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return min(len(a), len(b))

