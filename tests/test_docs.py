"""The documents a user gets stand alone: no citations of documents only the team has, every target
documented in docs/targets.md, every cited docs/ page shipped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USER_FACING = sorted([*REPO.glob("suites/**/*.robot"), *REPO.glob("compare/**/*.robot"), *REPO.glob("resources/**/*.resource"),
                      *REPO.glob("resources/**/*.yaml"), REPO / "README.md", *REPO.glob("docs/*.md")])  # fmt: skip
INTERNAL_CITATIONS = [
    (re.compile(r"\bissues? #?\d+", re.IGNORECASE), "an internal issue number"),
    (re.compile(r"\bseed(?: task)?,? (?:sections?|\d)", re.IGNORECASE), "a section of the internal seed document"),
    (re.compile(r"seed-test-performance", re.IGNORECASE), "the internal seed document"),
    (re.compile(r"\bcontract(?: sections?)? \d+(?:\.\d+)?", re.IGNORECASE), "a section of the internal contract"),
    (re.compile(r"\(sections? \d+(?:\.\d+)?", re.IGNORECASE), "a numbered section of a document not shipped"),
    (re.compile(r"\.\./shared\b"), "a file only the team has"),
]


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(REPO)))
def test_no_citation_of_documents_a_user_does_not_have(path: Path) -> None:
    found = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for pattern, what in INTERNAL_CITATIONS:
            match = pattern.search(line)
            if match:
                found.append(f"{path.relative_to(REPO)}:{no}: {match.group(0)!r} cites {what}")
    assert not found, "cite a docs/ page or say it plainly:\n" + "\n".join(found)


def test_the_check_catches_what_it_should() -> None:
    bad = ["Issue 3: measure with history", "issue 7 and contract 8.2", "seed section 9", "(sections 3.1, 6, 7)",
           "seed 2, 9: > 1000 msg/s", "see ../shared/facts.md", "contract section 13"]  # fmt: skip
    for text in bad:
        assert any(p.search(text) for p, _ in INTERNAL_CITATIONS), text
    good = ["the issue is the disk", "see docs/targets.md", "10 seeds", "conductor-loop's contract of errors"]
    for text in good:
        assert not any(p.search(text) for p, _ in INTERNAL_CITATIONS), text


def test_every_cited_docs_page_is_shipped() -> None:
    for path in USER_FACING:
        for cited in re.findall(r"docs/[\w.-]+\.md", path.read_text(encoding="utf-8")):
            assert (REPO / cited).is_file(), f"{path.relative_to(REPO)} cites {cited}, which is not in the repo"


def test_every_target_a_test_asserts_is_in_docs_targets() -> None:
    doc = (REPO / "docs" / "targets.md").read_text(encoding="utf-8")
    asserted = set()
    for suite in REPO.glob("suites/**/*.robot"):
        asserted |= set(re.findall(r"\s{2,}(?:<|>|==|>=|<=)\s{2,}\$\{(\w+)\}", suite.read_text(encoding="utf-8")))
    assert len(asserted) > 20
    missing = sorted(name for name in asserted if f"`{name}`" not in doc)
    assert not missing, f"targets asserted by a test but not described in docs/targets.md: {missing}"


def test_test_names_take_stated_numbers_from_their_variables() -> None:
    """A test name with a number a variable sets would lie after an override: take it from the variable."""
    values = {}
    for line in (REPO / "resources" / "targets.resource").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\$\{(\w+)\}\s{2,}(?:%\{\w+=)?(\d+)\}?\s*$", line)
        if match:
            values[match.group(1)] = match.group(2)
    offenders = []
    for suite in REPO.glob("suites/**/*.robot"):
        section = ""
        for line in suite.read_text(encoding="utf-8").splitlines():
            if line.startswith("***"):
                section = line
                continue
            if "Test Cases" not in section or not line or line[0].isspace() or line.startswith("#"):
                continue
            name = re.split(r"\s{2,}", line)[0]
            for number in re.findall(r"(?<![\w{$])(\d+)(?![\w}])", name):
                if number in values.values() and number not in ("0", "1"):  # 0 and 1 are words here (exit code 0)
                    offenders.append(f"{suite.name}: {name!r} states {number}")
    assert not offenders, "\n".join(offenders)
