"""The README and docs/: every relative link points at a file that exists (and a heading that exists,
for links with an anchor), the README stays a five-minute read that opens with the two set-up
commands, and its commands table names every `selfguide` command."""

import re
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links() -> list[tuple[Path, str]]:
    links = []
    for page in PAGES:
        for line in prose_lines(page):
            # inline code is not a link: `[x](y)` inside backticks stays text
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                    links.append((page, target))
    return links


LINKS = relative_links()


def test_pages_have_links():
    assert len(PAGES) >= 8 and len(LINKS) >= 20, (PAGES, LINKS)


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in LINKS])
def test_relative_link_resolves(page: Path, target: str):
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    where = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
    assert resolved.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
    if anchor:
        assert resolved.suffix == ".md", f"{page.relative_to(ROOT)}: anchor on a non-Markdown file: {target}"
        assert anchor in anchors(resolved), f"{page.relative_to(ROOT)} links to {target}: no such heading in {where}"


def test_slug_follows_github():
    assert slug("Comparing methods: `bench methods`") == "comparing-methods-bench-methods"
    assert slug("`openai` (servers)") == "openai-servers"
    assert slug("Self-Instruct, Alpaca and a teacher") == "self-instruct-alpaca-and-a-teacher"


def test_readme_is_short():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= 12_000, f"README.md is {len(text)} characters; move detail into docs/"


def test_readme_opens_with_the_two_commands():
    head = README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", head, flags=re.S | re.M)
    assert [lang for lang, _ in blocks] == ["bash", "bash"], blocks
    install, tests = (body.strip() for _, body in blocks)
    assert "\n" not in install and "\n" not in tests, "each set-up command is one line"
    assert install.startswith("python3 -m venv .venv") and "pip install -e ." in install and "selfguide run " in install
    assert tests.startswith("python3 -m venv .venv") and 'pip install -e ".[test]"' in tests and tests.endswith("python -m pytest -q")
    first = head.splitlines()
    assert first[0].startswith("# ") and first[2] == "```bash", "the commands come right after the title"


def command_names(group, prefix: str = "") -> list[str]:
    """Every leaf command's full name, such as 'bench superni' (typer vendors its own click)."""
    names = []
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            names += command_names(command, f"{prefix}{name} ")
        else:
            names.append(f"{prefix}{name}")
    return names


def test_readme_lists_every_command():
    from selfguide.cli import app

    table = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `selfguide ")]
    listed = {re.match(r"\| `selfguide ([a-z\- ]+?)(?: [A-Z`-]|`)", line).group(1) for line in table}
    names = command_names(typer.main.get_command(app))
    assert len(names) >= 12
    assert set(names) == listed, f"commands missing from README.md's table: {set(names) - listed}; not commands: {listed - set(names)}"
