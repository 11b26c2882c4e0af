"""The blocks a report is made of: sections build lists of them, the renderers draw them as
Markdown and as HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Note:
    """Something missing or skipped, shown so the reader does not take it for an empty result."""

    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    highlight: set[int] = field(default_factory=set)  # row indices to emphasise


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Details:
    summary: str
    text: str


@dataclass
class Verdict:
    """The answer first: the verdict line and the why line, set apart at the top of the page."""

    lines: list[str]


@dataclass
class FileLinks:
    """Relative links to files of the run folder."""

    paths: list[str]


Block = Heading | Para | Note | Table | Image | Details | Verdict | FileLinks
