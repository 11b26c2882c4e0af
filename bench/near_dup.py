"""Near-duplicate filter speed: `NoveltyPool` against rouge-score's own LCS, side by side, same decisions.

    python bench/near_dup.py                       # 2,000 candidates, about half a minute
    python bench/near_dup.py --candidates 500

Candidates are sentences from the Self-Instruct seed instructions and SuperNI task definitions and
inputs, plus paraphrases of them made by dropping, swapping and repeating words until their ROUGE-L
with the source falls to a random target around 0.7. Each candidate is checked against every earlier
kept one and kept iff its best ROUGE-L is below 0.7. The baseline is what Alpaca does: tokenise each
text once with the scorer's tokenizer, then `rouge_scorer._score_lcs(new, old).fmeasure` for every
pair. Prints both wall times, the ratio, and whether the keep/drop decisions are identical.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from rouge_score import rouge_scorer

from selfguide.stages.near_dup import NoveltyPool, rouge_l_f, rouge_tokens

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
THRESHOLD = 0.7


def source_sentences(shared: Path, rng: random.Random) -> list[str]:
    """Seed instructions, then sentences of SuperNI definitions and instance inputs, 4-30 words each."""
    seeds = [json.loads(line)["instruction"] for line in (shared / "self_instruct" / "seed_tasks.jsonl").open()]
    superni = []
    for path in sorted((shared / "superni" / "tasks").glob("task*.json")):
        task = json.loads(path.read_text())
        texts = task["Definition"] + [instance["input"] for instance in rng.sample(task["Instances"], min(40, len(task["Instances"])))]
        superni += [s for text in texts for s in re.split(r"(?<=[.!?])\s+|\n+", text)]
    unique = dict.fromkeys(s.strip() for s in seeds + superni if 4 <= len(rouge_tokens(s)) <= 30)
    return list(unique)


def paraphrase(text: str, rng: random.Random) -> str:
    """Drop, swap and repeat words until ROUGE-L with text falls to a target drawn around 0.7."""
    target = rng.uniform(0.55, 0.85)
    words = text.split()
    variant = list(words)
    while len(variant) > 2 and rouge_l_f(text, " ".join(variant)) > target:
        i = rng.randrange(len(variant))
        edit = rng.random()
        if edit < 0.5:
            del variant[i]
        elif edit < 0.85 and i + 1 < len(variant):
            variant[i], variant[i + 1] = variant[i + 1], variant[i]
        else:
            variant.insert(i, rng.choice(words))
    return " ".join(variant)


def build_candidates(count: int, shared: Path, seed: int) -> list[str]:
    rng = random.Random(seed)
    sources = source_sentences(shared, rng)
    originals = rng.sample(sources, min(len(sources), count * 6 // 10))
    variants = [paraphrase(rng.choice(originals), rng) for _ in range(count - len(originals))]
    candidates = originals + variants
    rng.shuffle(candidates)
    return candidates


def novelty_pool(candidates: list[str]) -> tuple[list[bool], list[float]]:
    pool = NoveltyPool(THRESHOLD)
    kept, best = [], []
    for text in candidates:
        novel, score, _ = pool.check(text)
        if novel:
            pool.add(text)
        kept.append(novel)
        best.append(score)
    return kept, best


def rouge_score_loop(candidates: list[str]) -> tuple[list[bool], list[float], int]:
    """Alpaca's loop: tokenise once, score the new text against every kept one with `_score_lcs`."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool_tokens: list[list[str]] = []
    kept, best, pairs = [], [], 0
    for text in candidates:
        tokens = scorer._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(tokens, old).fmeasure for old in pool_tokens]
        pairs += len(scores)
        best.append(max(scores, default=0.0))
        novel = best[-1] < THRESHOLD
        if novel:
            pool_tokens.append(tokens)
        kept.append(novel)
    return kept, best, pairs


def timed(fn, *args):
    """Result, wall seconds and CPU seconds (the CPU time is steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=2000, help="number of candidate texts")
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of sentences and the paraphrases")
    parser.add_argument("--shared", type=Path, default=SHARED, help="folder holding self_instruct/ and superni/")
    args = parser.parse_args()

    candidates = build_candidates(args.candidates, args.shared, args.seed)
    (ours, our_best), ours_wall, ours_cpu = timed(novelty_pool, candidates)
    (theirs, best, pairs), theirs_wall, theirs_cpu = timed(rouge_score_loop, candidates)

    near = sum(0.6 <= b < 0.8 for b in best)
    ties = sum(b == THRESHOLD for b in best)
    print(f"candidates {len(candidates)}, kept {sum(theirs)}, pairs scored by rouge-score {pairs:,}")
    print(f"candidates whose best ROUGE-L is in [0.6, 0.8): {near}; exactly {THRESHOLD}: {ties}")
    print(f"{'':28} {'wall s':>9} {'cpu s':>9}")
    print(f"{'rouge-score _score_lcs loop':28} {theirs_wall:9.3f} {theirs_cpu:9.3f}")
    print(f"{'NoveltyPool':28} {ours_wall:9.3f} {ours_cpu:9.3f}")
    print(f"{'speed-up':28} {theirs_wall / ours_wall:8.1f}x {theirs_cpu / ours_cpu:8.1f}x")
    differing = sum(a != b for a, b in zip(ours, theirs))
    print(f"decisions identical: {ours == theirs}" + ("" if ours == theirs else f" ({differing} differ)"))
    print(f"best scores identical (bit for bit): {our_best == best}")


if __name__ == "__main__":
    main()
