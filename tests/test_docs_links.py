"""The README is the front page and docs/ holds the rest: every link and picture in them must lead to
a file of this repository, every docs page must be reachable from the README, and the README must
stay short enough to be read as a front page."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300

#: Inline Markdown links and images: [text](target) and ![alt](target), with an optional "title".
_MARKDOWN_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
#: HTML pictures and links (the README shows its pictures side by side with <img>).
_HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def prose(text: str) -> str:
    """The text a reader sees as Markdown: fenced code blocks and code spans removed (a link
    written inside code is an example, not a link)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def link_targets(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    targets = [m.group(1).strip("<>") for m in _MARKDOWN_LINK.finditer(text)]
    return targets + _HTML_LINK.findall(text)


def local_target(target: str) -> str | None:
    """The file part of a link to this repository; None for a web link or an anchor on the same page."""
    if target.lower().startswith(_EXTERNAL) or target.startswith("#"):
        return None
    return unquote(target.split("#", 1)[0].split("?", 1)[0])


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in link_targets(path):
        local = local_target(target)
        if local is None:
            continue
        resolved = (path.parent / local).resolve()
        where = f"{path.relative_to(ROOT)}: ({target})"
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{where} points outside the repository ({resolved})")
        elif not resolved.exists():
            broken.append(f"{where} does not exist ({resolved.relative_to(ROOT)})")
    return broken


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_picture_leads_to_a_file_of_the_repository(path):
    assert not broken_links(path), "broken links:\n" + "\n".join(broken_links(path))


def test_the_readme_is_a_front_page_of_at_most_300_lines():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; the goal (issue 29) is a front page of at most {README_MAX_LINES}: "
        "move detail to a page in docs/ and link it from the README"
    )


def test_every_docs_page_is_linked_from_the_readme():
    linked = set()
    for target in link_targets(README):
        local = local_target(target)
        if local:
            linked.add((ROOT / local).resolve())
    orphans = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages no link in README.md leads to: {orphans}"


def _heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def test_every_anchor_in_a_link_names_a_heading_of_its_page():
    broken = []
    for path in markdown_files():
        for target in link_targets(path):
            if target.lower().startswith(_EXTERNAL) or "#" not in target:
                continue
            page, anchor = target.split("#", 1)
            page_path = (path.parent / unquote(page)).resolve() if page else path
            if page_path.suffix == ".md" and page_path.is_file() and anchor not in _heading_anchors(page_path):
                broken.append(f"{path.relative_to(ROOT)}: ({target}) names no heading of {page_path.name}")
    assert not broken, "\n".join(broken)
