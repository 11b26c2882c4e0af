"""The report's two renderings of one list of blocks: GitHub-flavoured Markdown and one
self-contained HTML page (inline CSS, plots as base64 data URIs, every text escaped)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from selfguide.report.blocks import Block, Details, FileLinks, Heading, Image, Note, Para, Table, Verdict


def render_markdown(blocks: list[Block], base: Path) -> str:
    """GitHub-flavoured Markdown; text is HTML-escaped because Markdown viewers render raw HTML."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {md_text(block.text)}")
        elif isinstance(block, Para):
            out.append(md_text(block.text))
        elif isinstance(block, Note):
            out.append(f"> **Note:** {md_text(block.text)}")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(md_cell(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
            for i, row in enumerate(block.rows):
                cells = [md_cell(c) for c in row]
                if i in block.highlight:
                    cells = [f"**{c}**" if c else c for c in cells]
                lines.append("| " + " | ".join(cells) + " |")
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            out.append(f"![{md_text(block.alt)}]({block.path.relative_to(base).as_posix()})")
        elif isinstance(block, Details):
            out.append(f"<details><summary>{md_text(block.summary)}</summary>\n\n```yaml\n{block.text.rstrip()}\n```\n\n</details>")
        elif isinstance(block, Verdict):
            out.append("\n>\n".join(f"> **{md_text(line)}**" if i == 0 else f"> {md_text(line)}" for i, line in enumerate(block.lines)))  # a paragraph each
        elif isinstance(block, FileLinks):
            out.append("\n".join(f"- [{md_text(p)}]({p})" for p in block.paths))
    return "\n\n".join(out) + "\n"


def md_text(text: str) -> str:
    return html.escape(text, quote=False)


def md_cell(text: str) -> str:
    return md_text(text).strip().replace("|", "\\|").replace("\n", "<br>")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; vertical-align: top; text-align: left; white-space: pre-wrap; overflow-wrap: anywhere; }
th { background: #f2f2f2; }
tr.highlight td { background: #fff4c2; font-weight: 600; }
p.note { background: #fdf1e6; border-left: 4px solid #e08a2e; padding: .5em .8em; }
img { max-width: 100%; display: block; margin: .6em 0; }
pre { background: #f6f8fa; padding: .8em; overflow: auto; font-size: .85em; }
summary { cursor: pointer; }
div.answer { background: #eef6ee; border: 2px solid #5a9a5a; border-radius: 6px; padding: .4em 1em; margin: 1em 0; }
p.verdict { font-size: 1.25em; font-weight: 700; margin: .4em 0; }
p.why { margin: .4em 0; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: inline CSS and plots as base64 data URIs, every text escaped."""
    esc = html.escape
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            body.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Note):
            body.append(f'<p class="note">{esc(block.text)}</p>')
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
            rows = "".join(
                ('<tr class="highlight">' if i in block.highlight else "<tr>") + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                for i, row in enumerate(block.rows)
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            body.append(f'<img src="data:image/png;base64,{data}" alt="{esc(block.alt)}">')
        elif isinstance(block, Details):
            body.append(f"<details><summary>{esc(block.summary)}</summary><pre>{esc(block.text)}</pre></details>")
        elif isinstance(block, Verdict):
            lines = "".join(f'<p class="{"verdict" if i == 0 else "why"}">{esc(line)}</p>' for i, line in enumerate(block.lines))
            body.append(f'<div class="answer">{lines}</div>')
        elif isinstance(block, FileLinks):
            body.append("<ul>" + "".join(f'<li><a href="{esc(p)}">{esc(p)}</a></li>' for p in block.paths) + "</ul>")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
