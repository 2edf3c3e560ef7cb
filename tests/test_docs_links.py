"""The README and docs/ stay navigable: every relative link and image resolves, every anchor names a heading.

Links are read with markdown-it-py (CommonMark: code blocks and inline code hold no links), and
an anchor is checked against the heading ids GitHub gives the target page. Absolute URLs are not
fetched. Also the README's contract (DESIGN.md): it starts with `make up` and `make test`, the
Makefile has both, and it stays a page a newcomer reads in five minutes.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")

PARSER = MarkdownIt("commonmark").enable("table")


def heading_ids(text: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to '-',
    repeats numbered (`-1`, `-2`)."""
    tokens = PARSER.parse(text)
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for opening, inline in itertools.pairwise(tokens):
        if opening.type != "heading_open":
            continue
        words = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
        slug = re.sub(r"[^\w\- ]", "", words.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link and image of a page."""
    found = []
    for token in PARSER.parse(text):
        if token.type != "inline":
            continue
        line = token.map[0] + 1 if token.map else 0
        for child in token.children or []:
            if child.type == "link_open":
                found.append((line, str(child.attrs.get("href", ""))))
            elif child.type == "image":
                found.append((line, str(child.attrs.get("src", ""))))
    return found


def problems(page: Path, root: Path = ROOT) -> list[str]:
    out = []
    where = page.relative_to(root)
    for line, target in links(page.read_text(encoding="utf-8")):
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue  # absolute URLs, mailto: not fetched here
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if root not in (resolved, *resolved.parents):
            out.append(f"{where}:{line}: {target}: points outside the repository")
            continue
        if not resolved.exists():
            out.append(f"{where}:{line}: {target}: {resolved.relative_to(root)} does not exist")
            continue
        if anchor:
            if resolved.suffix != ".md" or resolved.is_dir():
                out.append(f"{where}:{line}: {target}: an anchor into a file that is not Markdown")
            elif unquote(anchor) not in heading_ids(resolved.read_text(encoding="utf-8")):
                out.append(f"{where}:{line}: {target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    assert problems(page) == []


def test_a_broken_link_and_anchor_are_found(tmp_path):
    """The check itself: a missing file, a missing heading, a link in code ignored."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Settings (`[www]`, `reports_url`)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#settings-www-reports_url) [gone](missing.md) [bad](other.md#nope)\n\n"
        "`[in code](missing.md)` [web](https://example.com/x) [self](#a-page)\n\n# A page\n"
    )
    assert problems(page, tmp_path) == [
        "page.md:1: missing.md: missing.md does not exist",
        "page.md:1: other.md#nope: no heading #nope in other.md",
    ]


def test_the_readme_starts_with_make_up_and_make_test():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = next(t for t in PARSER.parse(text) if t.type == "fence")
    commands = [line.split("#")[0].strip() for line in first_block.content.splitlines()]
    assert commands[:2] == ["make up", "make test"]
    targets = re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert {"up", "test"} <= set(targets)


def test_the_readme_is_read_in_five_minutes():
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines: move reference text into docs/"


def test_every_pipeline_file_example_of_the_readme_loads():
    """The README's `.namaskah-ci.yml` examples are files the master accepts (a key renamed or removed in
    the schema fails here, not in a reader's first pipeline)."""
    from namaskah_ci.pipeline.model import load_pipeline

    tokens = MarkdownIt().parse((ROOT / "README.md").read_text(encoding="utf-8"))
    fences = [t for t in tokens if t.type == "fence" and t.info.strip() == "yaml"]
    examples = [t.content for t in fences if "version: 1" in t.content]
    assert examples, "the README shows no pipeline file"
    for number, text in enumerate(examples, 1):
        pipeline = load_pipeline(text, f"README.md example {number}")
        assert pipeline.jobs
