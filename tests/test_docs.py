"""The project's own documents: every relative link of the README, CHANGELOG, docs/ and benchmarks/
resolves to a file of the repository (and a ``#section`` to a heading of it); none leaves it; every
example command of the README and docs/usage.md is one the CLI accepts."""

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


LINKED = [d for d in DOCUMENTS if links(d)]


def test_the_documents_link_to_each_other():
    """The README and most of docs/ hold relative links (the test below checks each; a document without
    one has nothing for it to check)."""
    assert {ROOT / "README.md", ROOT / "docs" / "usage.md", ROOT / "docs" / "scaling.md"} <= set(LINKED)
    assert sum(len(links(d)) for d in LINKED) >= 50


@pytest.mark.parametrize("doc", LINKED, ids=[str(d.relative_to(ROOT)) for d in LINKED])
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


COMMAND = re.compile(
    r"(?:\.venv/bin/)?(seaice-training|seaice-twin)\s+(--.*)|torchrun\s.*-m empirical_seaice\.cli\s+(--.*)"
)


def commands(path: Path) -> list[tuple[str, str]]:
    """The ``seaice-training`` and ``seaice-twin`` command lines in a Markdown file's code blocks (lines
    continued with a backslash joined, comments dropped), but synopses with ``[...]``, ``{...}`` or ``...``."""
    found = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", path.read_text(), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            m = COMMAND.match(line.strip())
            if m:
                args = re.split(r"\s+#", m.group(2) or m.group(3))[0]
                if not re.search(r"[\[{]|\.\.\.", args):
                    found.append((m.group(1) or "seaice-training", args))
    return found


def test_the_command_lines_of_the_readme_and_the_usage_guide_parse():
    """Every example command a user would copy from the README or docs/usage.md is accepted by the CLI's
    own parser (flag names, choices, values): the documents cannot drift from the options unseen."""
    import shlex

    from empirical_seaice.cli.parser import build_parser
    from empirical_seaice.twin.cli import build_parser as build_twin_parser

    found = [(doc.name, *c) for doc in (ROOT / "README.md", ROOT / "docs" / "usage.md") for c in commands(doc)]
    assert len(found) >= 10 and {prog for _, prog, _ in found} == {"seaice-training", "seaice-twin"}
    for doc, prog, args in found:
        parser = build_parser() if prog == "seaice-training" else build_twin_parser()
        try:
            parser.parse_args(shlex.split(args))
        except (SystemExit, Exception) as exc:  # the CLI's parser raises SeaIceError, argparse SystemExit
            raise AssertionError(f"{doc}: {prog} {args}: {exc}") from exc
