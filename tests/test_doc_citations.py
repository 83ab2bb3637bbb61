"""Every document a code comment cites is in this repository, with the section it names.

Comments cite pages as ``docs/home-assistant.md §1.8–§1.9``, ``peers.md §3 #8`` or
``docs live-view.md §5.13``. A bare name means ``docs/<name>``; a name with a folder is relative
to the repository root. Each § number must be a numbered heading of that page (``## 3.`` or
``### 3.5``); both ends of a range must exist, and every top-level section between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("custom_components", "tests", "benchmarks", "scripts")
_FILE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")
# A run of section numbers right after the file name: "§2.4, §6.1 and §6.2", "§1.8–§1.9".
_SECTIONS = re.compile(r"(?:\s*(?:,|;|and|or|to|–|-)?\s*§\s?\d+(?:\.\d+)*)+")
_NUMBER = re.compile(r"(–|-|to)?\s*§\s?(\d+(?:\.\d+)*)")
_HEADING = re.compile(r"^#+\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


@dataclass(frozen=True)
class Citation:
    """One cited page and the sections named with it."""

    source: str
    page: str  # repository-relative path
    sections: tuple[str, ...]


def citations_in(text: str, source: str) -> list[Citation]:
    """Return the document citations in ``text`` (comment line breaks joined)."""
    joined = re.sub(r"\n[ \t]*(?:#[ \t]*)?", " ", text)
    found = []
    for match in _FILE.finditer(joined):
        name = match.group(1)
        page = name if "/" in name else f"docs/{name}"
        tail = _SECTIONS.match(joined, match.end())
        sections: list[str] = []
        if tail is not None:
            previous: str | None = None
            for dash, number in _NUMBER.findall(tail.group(0)):
                if dash and previous is not None and "." not in previous + number:
                    sections.extend(str(n) for n in range(int(previous) + 1, int(number)))
                sections.append(number)
                previous = number
        found.append(Citation(source, page, tuple(sections)))
    return found


def all_citations() -> list[Citation]:
    """Return every citation in the scanned folders' text files."""
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if (
                not path.is_file()
                or "__pycache__" in path.parts
                or path.suffix == ".md"
                or path == Path(__file__).resolve()  # its examples are not citations
            ):
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            found.extend(citations_in(text, str(path.relative_to(ROOT))))
    return found


def headings(page: Path) -> set[str]:
    """Return the section numbers of a page's numbered headings."""
    return set(_HEADING.findall(page.read_text(encoding="utf-8")))


def test_parser_reads_the_citation_forms_in_use() -> None:
    """The forms comments use are read as the sections they name."""
    text = (
        "(docs/home-assistant.md §1.8–§1.9) and docs/hksv-protocol.md §2.4, §6.1 and §6.2.\n"
        "# (docs/hksv-protocol.md §3-§5) (peers.md §3 #8) (docs live-view.md §5.13)\n"
        "# see docs/hksv-protocol.md §5.4 and §7 items 1-2; HAP R17 §9.1.4 (docs/DESIGN.md)\n"
        "(docs/home-assistant.md\n    # §3.5) benchmarks/README.md"
    )
    assert [(c.page, c.sections) for c in citations_in(text, "x")] == [
        ("docs/home-assistant.md", ("1.8", "1.9")),
        ("docs/hksv-protocol.md", ("2.4", "6.1", "6.2")),
        ("docs/hksv-protocol.md", ("3", "4", "5")),
        ("docs/peers.md", ("3",)),
        ("docs/live-view.md", ("5.13",)),
        ("docs/hksv-protocol.md", ("5.4", "7")),
        ("docs/DESIGN.md", ()),
        ("docs/home-assistant.md", ("3.5",)),
        ("benchmarks/README.md", ()),
    ]


def test_headings_are_read_with_their_numbers(tmp_path: Path) -> None:
    """``## 3. Title`` and ``### 3.5 Title`` count; unnumbered headings do not."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## 3. Transport\n\n### 3.5 Teardown\n\n## Notes 4\n")
    assert headings(page) == {"3", "3.5"}


CITATIONS = all_citations()


def test_comments_cite_documents() -> None:
    """The scan finds the citations the code is known to make (a broken scan finds none)."""
    pages = {c.page for c in CITATIONS}
    assert {"docs/home-assistant.md", "docs/hksv-protocol.md", "docs/live-view.md"} <= pages
    assert sum(len(c.sections) for c in CITATIONS) >= 30


def test_no_citation_leaves_the_repository() -> None:
    """Comments cite this repository's documents only."""
    outside = [c for c in CITATIONS if "shared/" in c.page or c.page.startswith("..")]
    assert outside == []


@pytest.mark.parametrize(
    "citation",
    [pytest.param(c, id=f"{c.source}:{c.page}") for c in CITATIONS],
)
def test_citation_resolves(citation: Citation) -> None:
    """The cited page exists and has a heading for every section named."""
    page = ROOT / citation.page
    assert page.is_file(), f"{citation.source} cites {citation.page}, which does not exist"
    missing = set(citation.sections) - headings(page)
    assert not missing, f"{citation.source} cites {citation.page} §{sorted(missing)}"
