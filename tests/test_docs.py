"""The documents a user gets stand alone: no citations of documents only the team has, every target
documented in docs/targets.md, every cited docs/ page shipped, every link and anchor resolving, every
repository path they name present, and docs/architecture.md naming every module of the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MARKDOWN = sorted([REPO / "README.md", *REPO.glob("docs/*.md"), REPO / "conductor_perf" / "reference" / "README.md",
                   REPO / "tests" / "fixtures" / "README.md", REPO / "results" / "README.md"])  # fmt: skip
USER_FACING = sorted([*REPO.glob("suites/**/*.robot"), *REPO.glob("compare/**/*.robot"), *REPO.glob("swarm/**/*.robot"), *REPO.glob("resources/**/*.resource"),
                      *REPO.glob("resources/**/*.yaml"), *MARKDOWN])  # fmt: skip
# the code's docstrings, comments and messages reach users too (libdoc, errors, skip reasons)
CODE = sorted([*REPO.glob("conductor_perf/**/*.py"), *REPO.glob("libraries/**/*.py"), REPO / "Makefile", REPO / ".ci" / "run"])
INTERNAL_CITATIONS = [
    (re.compile(r"\bissues? #?\d+", re.IGNORECASE), "an internal issue number"),
    (re.compile(r"\bseed(?: task)?,? (?:sections?|\d)", re.IGNORECASE), "a section of the internal seed document"),
    (re.compile(r"seed-test-performance", re.IGNORECASE), "the internal seed document"),
    (re.compile(r"\bcontract(?: sections?)? \d+(?:\.\d+)?", re.IGNORECASE), "a section of the internal contract"),
    (re.compile(r"\(sections? \d+(?:\.\d+)?", re.IGNORECASE), "a numbered section of a document not shipped"),
    (re.compile(r"\.\./shared\b"), "a file only the team has"),
]


@pytest.mark.parametrize("path", USER_FACING + CODE, ids=lambda p: str(p.relative_to(REPO)))
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


FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!\\)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
TOP_LEVEL = ("conductor_perf/", "libraries/", "resources/", "suites/", "compare/", "swarm/", "tests/", "docs/",
             "scripts/", ".ci/")  # fmt: skip


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of a Markdown text outside fenced code blocks."""
    out, fenced = [], False
    for no, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((no, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link targets and markup dropped, lower case, punctuation removed, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (repeats numbered as GitHub does) and HTML ids."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def without_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def test_slugs_and_links_are_read_as_github_reads_them() -> None:
    assert slug("Regression gate — `suites/99__regression.robot` (suite)") == "regression-gate--suites99__regressionrobot-suite"
    assert slug("What a real conductor-loop 0.76 breaks") == "what-a-real-conductor-loop-076-breaks"
    assert slug("The stub agent `stub/codex`") == "the-stub-agent-stubcodex"
    assert slug("Swarms: the load from pabot processes") == "swarms-the-load-from-pabot-processes"
    line = "see [the `x` page](docs/a.md#b) and [c](https://example.org/d) and ![img](e.svg)"
    assert LINK.findall(line) == ["docs/a.md#b", "https://example.org/d", "e.svg"]


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    broken = []
    for no, line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(without_code_spans(line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(REPO)}:{no}: {target}"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix != ".md":
                broken.append(f"{where}: an anchor into a file that is not Markdown")
            elif anchor and anchor not in anchors(linked):
                broken.append(f"{where}: no heading or anchor #{anchor} in {linked.relative_to(REPO)}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_path_the_docs_name_exists(path: Path) -> None:
    """A path in backticks that starts at a folder of the repository (`conductor_perf/measure/load.py`) exists.

    Module paths below the package (`swarm/board.py` in docs/architecture.md) count too; ``docs/<folder>/...``
    paths are conductor-loop's own pages (docs/api-behaviour.md cites them), not ours.
    """
    missing = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for span in re.findall(r"`([^`\s]+)`", line):
            name = span.split("#", 1)[0].split("::", 1)[0].rstrip(".,:;")
            if not name.startswith(TOP_LEVEL) or re.search(r"[<>*{}$|]|\.\.\.|…", name):
                continue
            if re.match(r"docs/[^/]+/", name):
                continue
            if not (REPO / name).exists() and not (REPO / "conductor_perf" / name).exists():
                missing.append(f"{path.relative_to(REPO)}:{no}: {span}")
    assert not missing, "paths named in the docs that are not in the repository:\n" + "\n".join(missing)


def package_modules() -> list[str]:
    """Every module of the package as a path below conductor_perf/ (packages' __init__ and __main__ left out)."""
    package = REPO / "conductor_perf"
    return sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))


def test_architecture_names_every_module_of_the_package() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+\.py)`", doc))
    assert len(package_modules()) > 50
    unnamed = [m for m in package_modules() if m not in named]
    assert not unnamed, f"modules docs/architecture.md does not describe: {unnamed}"
    gone = sorted(n for n in named if not (REPO / "conductor_perf" / n).is_file() and not (REPO / n).is_file())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_the_package_never_imports_robot() -> None:
    """docs/architecture.md says so: all logic is tested without Robot."""
    offenders = []
    for path in sorted((REPO / "conductor_perf").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == "robot" or n.startswith("robot.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"the package imports robot: {offenders}"
