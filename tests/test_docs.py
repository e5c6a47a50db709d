"""The project's own documents: every relative link of the README, CHANGELOG, docs/ and benchmarks/
resolves to a file of the repository (and a ``#section`` to a heading of it); none leaves it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.md")]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    text = FENCE.sub("", path.read_text())
    found = set()
    for line in text.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            title = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            found.add(title.replace(" ", "-"))
    return found


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", path.read_text())) if not re.match(r"[a-z]+:", t)]


def test_anchors_follow_github():
    assert {"training-on-several-processes", "set-up-two-commands", "presets"} <= anchors(ROOT / "README.md")


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_every_relative_link_resolves_inside_the_repository(doc):
    for target in links(doc):
        file, _, section = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.is_relative_to(ROOT), f"{doc.name}: {target} points outside the repository"
        assert path.exists(), f"{doc.name}: {target} does not exist"
        if section and path.suffix == ".md":
            assert section in anchors(path), f"{doc.name}: {target}: no such section in {path.name}"


def test_the_readme_has_the_two_set_up_commands_and_points_into_docs():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up: two commands", 1)[1].split("```")[1]
    assert [line.split("#")[0].strip() for line in setup.strip().splitlines()] == ["make demo", "make test"]
    assert {"docs/usage.md#options", "docs/data-format.md"} <= set(links(ROOT / "README.md"))
