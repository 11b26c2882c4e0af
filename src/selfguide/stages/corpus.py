"""The unlabelled corpus instruction backtranslation writes instructions for: documents from local
JSONL or text files, a `datasets` dataset column read as a stream, or SuperNI tasks' outputs, cut
into segments and length-filtered. Every segment is kept or dropped with a reason (too_short, too_long, duplicate).

Humpback took self-contained segments of web pages (ClueWeb) after deduplication and length and
quality filtering, without publishing the thresholds; ours are paragraphs (split at blank lines)
or whole documents, between `min_words` and `max_words` words, exact duplicates dropped.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from selfguide.errors import BadInputError
from selfguide.stages.filters import Drop

_PARAGRAPH = re.compile(r"\n\s*\n")


class CorpusConfig(BaseModel):
    """Where the documents come from and how they are cut."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(default_factory=list, description="JSONL (one document per line, in text_field) or plain text files; globs allowed.")
    superni: list[str] = Field(
        default_factory=list,
        description="SuperNI tasks (task1622, or 'all') whose instances' first references are documents; a task method's own task is left out.",
    )
    superni_root: str | None = Field(None, description="SuperNI folder holding tasks/; unset: $SELFGUIDE_SUPERNI or ../shared/superni.")
    text_field: str = Field("text", description="JSONL field holding a document.")
    dataset: str | None = Field(None, description="A `datasets` dataset (Hub id, data folder or file) read as a stream, instead of or besides paths.")
    dataset_config: str | None = Field(None, description="Its configuration name.")
    split: str = Field("train", description="Its split.")
    column: str = Field("text", description="Its column holding a document.")
    limit: int | None = Field(None, ge=1, description="Read at most this many documents (before segmenting).")
    segment: Literal["paragraph", "document"] = Field("paragraph", description="paragraph: split documents at blank lines; document: keep them whole.")
    min_words: int = Field(5, ge=1, description="Drop shorter segments (too_short).")
    max_words: int = Field(400, ge=1, description="Drop longer segments (too_long).")
    max_segments: int | None = Field(None, ge=1, description="Use the first this many segments that pass the filters; unset: all.")

    @model_validator(mode="after")
    def _bounds(self) -> CorpusConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must be at most max_words ({self.max_words})")
        return self


def read_documents(config: CorpusConfig, exclude_task: str | None = None) -> Iterator[tuple[str, str]]:
    """(source, document) pairs: SuperNI outputs, then files in the order given, then the dataset."""
    count = 0
    if config.superni:
        for source, document in superni_outputs(config, exclude_task):
            if config.limit is not None and count >= config.limit:
                return
            count += 1
            yield source, document
    for pattern in config.paths:
        files = sorted(Path(p) for p in glob.glob(pattern)) or [Path(pattern)]
        for path in files:
            for document in read_file(path, config.text_field):
                if config.limit is not None and count >= config.limit:
                    return
                count += 1
                yield str(path), document
    if config.dataset:
        from selfguide.datastore.sources import DatasetSource

        source = DatasetSource(name=config.dataset, config=config.dataset_config, split=config.split, input_column=config.column, output_column=config.column)
        for row in source.read([]):
            if config.limit is not None and count >= config.limit:
                return
            count += 1
            yield config.dataset, row.input


def superni_outputs(config: CorpusConfig, exclude_task: str | None) -> Iterator[tuple[str, str]]:
    """The tasks' first references taken in turn, one from each task, so the first N documents
    come from every task rather than from the first task files."""
    from selfguide.datastore.sources import SuperNISource

    by_task: dict[str, list[str]] = {}
    for row in SuperNISource(root=config.superni_root, tasks=[] if "all" in config.superni else config.superni).read([]):
        if row.group != exclude_task:
            by_task.setdefault(row.group, []).append(row.output)
    for depth in range(max((len(v) for v in by_task.values()), default=0)):
        for task, outputs in by_task.items():
            if depth < len(outputs):
                yield f"superni:{task}", outputs[depth]


def read_file(path: Path, text_field: str) -> Iterator[str]:
    if not path.is_file():
        raise BadInputError(path, "corpus file", "an existing JSONL or text file", "no such file")
    if path.suffix.lower() not in (".jsonl", ".json"):
        yield path.read_text(encoding="utf-8")
        return
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise BadInputError(path, f"line {lineno}", "one JSON object per line", err.msg) from None
            value = row.get(text_field) if isinstance(row, dict) else None
            if not isinstance(value, str):
                raise BadInputError(path, f"line {lineno} field {text_field!r}", "a string (the document)", repr(value)[:60])
            yield value


def segments(config: CorpusConfig, exclude_task: str | None = None, check: Callable[[str], Drop | None] | None = None) -> list[dict]:
    """Every segment, kept or dropped with its reason; ids are stable for the same corpus and config.
    `exclude_task`: a SuperNI task whose outputs are not documents (the task being made data for);
    `check`: the caller's own filter after these (max_segments counts segments that pass it too)."""
    if not config.paths and not config.dataset and not config.superni:
        raise BadInputError("corpus", "paths / dataset / superni", "at least one corpus file, a dataset or SuperNI tasks", "none given")
    records: list[dict] = []
    seen: set[str] = set()
    kept = 0
    for source, document in read_documents(config, exclude_task):
        pieces = _PARAGRAPH.split(document) if config.segment == "paragraph" else [document]
        for piece in pieces:
            text = piece.strip()
            if not text:
                continue
            drop = check_segment(text, config, seen) or (check(text) if check else None)
            if drop is None and config.max_segments is not None and kept >= config.max_segments:
                break
            seen.add(text)
            kept += drop is None
            records.append(
                {
                    "id": f"doc-{len(records)}",
                    "source": source,
                    "text": text,
                    "status": "kept" if drop is None else "dropped",
                    "reason": None if drop is None else drop.reason,
                    "detail": None if drop is None else drop.detail,
                }
            )
        if config.max_segments is not None and kept >= config.max_segments:
            break
    return records


def check_segment(text: str, config: CorpusConfig, seen: set[str]) -> Drop | None:
    words = len(text.split())
    if words < config.min_words:
        return Drop("too_short", f"{words} < {config.min_words} words")
    if words > config.max_words:
        return Drop("too_long", f"{words} > {config.max_words} words")
    if text in seen:
        return Drop("duplicate")
    return None
