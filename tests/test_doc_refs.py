"""Documents point somewhere: every reference to a file under ``docs/``, and to a numbered
section of one (``docs/method.md section 7``, ``sections 3 and 5``, ``§2``), names a file
that exists (spelled as on disk) and a section that file has. ``docs/method.md``'s own
``(section N)`` pointers are checked against its headings too."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where references live: code, tests, bench scripts, the shipped configs and the documents.
SCANNED = ("src/**/*.py", "tests/**/*.py", "bench/*.py", "bench/*.sh", "configs/**/*.yaml", "docs/**/*.md",
           "README.md", "BENCHMARKS.md", "Makefile", "pyproject.toml")
REF = re.compile(r"(?<![\w/])docs/([\w./-]*\w)")  # docs/<path>, trailing punctuation left out
NUMS = r"(\d+)((?:\s*(?:,|and|&|or)\s*\d+)*)"
# the number may follow on the next line (a comment, or a string literal continued)
SECTIONS = re.compile(r'[ \t]*,?[ \t]*(?:"?[ \t]*\n[ \t#]*"?)?(?:sections?\s+|§+\s*)' + NUMS)
HEADING = re.compile(r"^#{1,6}\s+(\d+)\.\s", re.M)


def scanned_files() -> list[Path]:
    files = {p for pattern in SCANNED for p in ROOT.glob(pattern) if p.is_file()}
    return sorted(p for p in files if "__pycache__" not in p.parts and p.name != Path(__file__).name)


def sections_of(path: Path) -> set[int]:
    return {int(n) for n in HEADING.findall(path.read_text())}


def numbers(first: str, rest: str) -> list[int]:
    return [int(first), *map(int, re.findall(r"\d+", rest))]


def references(text: str) -> list[tuple[str, list[int]]]:
    """``(path under docs/, [section numbers])`` for every ``docs/...`` reference in ``text``."""
    out = []
    for m in REF.finditer(text):
        s = SECTIONS.match(text, m.end())
        out.append((m.group(1), numbers(*s.groups()) if s else []))
    return out


def exists_as_spelled(target: str) -> bool:
    """``docs/<target>`` exists with exactly this spelling (a case-insensitive disk says yes to
    ``METHOD.md``; the repository, and every other disk, does not)."""
    here = ROOT / "docs"
    for part in target.split("/"):
        if not here.is_dir() or part not in {p.name for p in here.iterdir()}:
            return False
        here = here / part
    return True


def problems(text: str, where: str) -> list[str]:
    out = []
    for target, secs in references(text):
        if not exists_as_spelled(target):
            out.append(f"{where}: docs/{target} does not exist")
            continue
        doc = ROOT / "docs" / target
        missing = sorted(set(secs) - sections_of(doc)) if doc.is_file() else []
        if missing:
            out.append(f"{where}: docs/{target} has no section {missing}")
    return out


def test_reference_parser():
    refs = references("see docs/method.md section 7, and docs/method.md sections 3 and 5 (docs/method.md §2);"
                      ' docs/METHOD.md. docs/a/b.md (docs/method.md "\n    "section 9)')
    assert refs == [("method.md", [7]), ("method.md", [3, 5]), ("method.md", [2]), ("METHOD.md", []),
                    ("a/b.md", []), ("method.md", [9])]


def test_a_wrong_case_or_section_is_found():
    found = problems('"""docs/METHOD.md section 7, docs/method.md section 99, docs/method.md section 1."""',
                     "probe.py")
    assert found == ["probe.py: docs/METHOD.md does not exist", "probe.py: docs/method.md has no section [99]"]


def test_every_docs_reference_exists():
    files = scanned_files()
    assert len(files) > 50  # the globs really found the tree
    found = [p for f in files for p in problems(f.read_text(errors="replace"), str(f.relative_to(ROOT)))]
    assert not found, "\n".join(found)


def test_method_md_pointers_to_its_own_sections():
    method = ROOT / "docs" / "method.md"
    text, have = method.read_text(), sections_of(method)
    cited = {n for m in re.finditer(r"(?<![\w/.])sections?\s+" + NUMS, text) for n in numbers(*m.groups())}
    assert cited, "the parser found no section pointer"
    assert cited <= have, f"docs/method.md cites its own sections {sorted(cited - have)}, which it lacks"
