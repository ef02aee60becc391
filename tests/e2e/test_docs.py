"""The documentation's links resolve: every relative link and `#anchor` in README.md,
docs/*.md, CHANGELOG.md and istio/README.md names an existing file and, for a Markdown file,
an existing heading (anchors as GitHub makes them). Mentions of `README.md#…` and `docs/….md#…` in the code's comments
(src/, tests/, benches/, examples/, istio/, envoy/, Makefile) are checked the same way.
LICENSE holds the full text of the license Cargo.toml names; CHANGELOG.md keeps an Unreleased
section (Keep a Changelog).

Needs nothing but Python; also runs as a script: `python3 tests/e2e/test_docs.py`.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) or ![alt](target), target without spaces, optional "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
# README.md#anchor or docs/NAME.md#anchor written in code comments
CODE_MENTION = re.compile(r"((?:\.\./)*(?:README\.md|docs/[\w./-]+\.md))#([\w-]+)")


def _lines_outside_fences(text: str):
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation other than
    `-` and `_` removed, each space a `-`."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or ch == " " or cat[0] in "LN" or cat == "Mn":
            out.append("-" if ch == " " else ch)
    return "".join(out)


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    text = path.read_text(encoding="utf-8")
    for _, line in _lines_outside_fences(text):
        m = HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
        found.update(HTML_ID.findall(line))
    return found


def links(path: Path):
    """(line number, target) of every link outside code blocks and code spans."""
    for n, line in _lines_outside_fences(path.read_text(encoding="utf-8")):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield n, m.group(1)


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def check_target(source: Path, target: str, cache: dict[Path, set[str]]) -> str | None:
    """None if `target`, written in `source`, resolves; else why not."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
        return None
    file_part, _, anchor = target.partition("#")
    dest = (source.parent / unquote(file_part)).resolve() if file_part else source
    try:
        dest.relative_to(REPO)
    except ValueError:
        return f"{target}: points outside the repository"
    if not dest.exists():
        return f"{target}: no such file {dest.relative_to(REPO)}"
    if anchor:
        if dest.suffix != ".md" or dest.is_dir():
            return f"{target}: an anchor into a file that is not Markdown"
        if dest not in cache:
            cache[dest] = anchors(dest)
        if unquote(anchor) not in cache[dest]:
            return f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}"
    return None


def link_checked_documents() -> list[Path]:
    """documents(), and the Markdown at the top and in istio/ that they link to."""
    return [*documents(), REPO / "CHANGELOG.md", REPO / "istio" / "README.md"]


def broken_doc_links() -> list[str]:
    cache: dict[Path, set[str]] = {}
    problems = []
    for doc in link_checked_documents():
        for n, target in links(doc):
            why = check_target(doc, target, cache)
            if why:
                problems.append(f"{doc.relative_to(REPO)}:{n}: {why}")
    return problems


def code_files():
    for top in ("src", "tests", "benches", "examples", "istio", "envoy", "fuzz"):
        for p in sorted((REPO / top).rglob("*")):
            if p.is_file() and p.suffix in {".rs", ".py", ".yaml", ".yml", ".sql", ".md", ".toml", ".sh"}:
                yield p
    yield REPO / "Makefile"


def broken_code_mentions() -> list[str]:
    cache: dict[Path, set[str]] = {}
    problems = []
    for p in code_files():
        if "target" in p.relative_to(REPO).parts or p == Path(__file__).resolve():
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for m in CODE_MENTION.finditer(line):
                name, anchor = m.group(1), m.group(2)
                # a mention names a file from the repository root (or relative to the file)
                base = REPO if not name.startswith("..") else p.parent
                why = check_target(base / "_", f"{name}#{anchor}", cache)
                if why:
                    problems.append(f"{p.relative_to(REPO)}:{n}: {why}")
    return problems


def test_slugs_follow_github():
    assert github_slug("Cuts: redact first, cut second") == "cuts-redact-first-cut-second"
    assert github_slug("Settings (`redaction`)") == "settings-redaction"
    assert github_slug("TCP: the same module as a network filter") == "tcp-the-same-module-as-a-network-filter"
    assert github_slug("Istio, in five steps") == "istio-in-five-steps"
    assert github_slug("The `default` rule") == "the-default-rule"
    assert github_slug("`body_capture_budget_bytes`") == "body_capture_budget_bytes"
    assert github_slug("Or as an access logger: the same events for less") == (
        "or-as-an-access-logger-the-same-events-for-less"
    )


def test_docs_exist():
    assert (REPO / "README.md").is_file()
    assert (REPO / "docs" / "README.md").is_file()
    assert len(documents()) > 2


def test_every_doc_link_resolves():
    problems = broken_doc_links()
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_doc_is_linked_from_the_index():
    index = {t.partition("#")[0] for _, t in links(REPO / "docs" / "README.md")}
    missing = [d.name for d in documents()[1:] if d.name != "README.md" and d.name not in index]
    assert not missing, f"docs/README.md does not link {missing}"


def test_readme_anchor_mentions_in_code_resolve():
    problems = broken_code_mentions()
    assert not problems, "broken mentions:\n" + "\n".join(problems)


def test_readme_stays_a_front_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move reference material into docs/"


# Cargo.toml's `license` (an SPDX id) -> what its full text must hold: every numbered section
# heading of the Apache License 2.0, its title and its end. A license not listed here fails.
LICENSE_TEXTS = {
    "Apache-2.0": [
        "Apache License", "Version 2.0, January 2004", "http://www.apache.org/licenses/",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "1. Definitions.", "2. Grant of Copyright License.", "3. Grant of Patent License.",
        "4. Redistribution.", "5. Submission of Contributions.", "6. Trademarks.",
        "7. Disclaimer of Warranty.", "8. Limitation of Liability.",
        "9. Accepting Warranty or Additional Liability.", "END OF TERMS AND CONDITIONS",
    ],
}


def cargo_license() -> str:
    m = re.search(r'^license\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(encoding="utf-8"), re.M)
    assert m, "Cargo.toml names no license"
    return m.group(1)


def license_problems(text: str, spdx: str) -> list[str]:
    """What keeps `text` from being the full text of the license `spdx`."""
    if spdx not in LICENSE_TEXTS:
        return [f"no full text known here for {spdx!r}: add it to LICENSE_TEXTS"]
    flat = " ".join(text.split())
    problems = [f"missing {part!r}" for part in LICENSE_TEXTS[spdx] if part not in flat]
    positions = [flat.find(part) for part in LICENSE_TEXTS[spdx]]
    if not problems and positions != sorted(positions):
        problems.append("the sections are out of order")
    if not problems and len(flat) < 9000:  # the Apache License 2.0 is ~9,700 characters without the appendix
        problems.append(f"only {len(flat)} characters: not the full text")
    return problems


def test_license_file_is_the_license_cargo_names():
    path = REPO / "LICENSE"
    assert path.is_file(), "no LICENSE at the top of the repository"
    problems = license_problems(path.read_text(encoding="utf-8"), cargo_license())
    assert not problems, f"LICENSE is not the full {cargo_license()} text: " + "; ".join(problems)


def test_license_check_refuses_what_is_not_the_full_text():
    full = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert license_problems(full.replace("6. Trademarks.", ""), "Apache-2.0")
    assert license_problems(full.split("7. Disclaimer")[0], "Apache-2.0")
    assert license_problems("MIT License\n\nPermission is hereby granted", "Apache-2.0")
    assert license_problems(full, "MIT")


def changelog_sections(text: str) -> list[str]:
    """The `## [...]` section names of a Keep a Changelog file, outside code blocks."""
    return [m.group(1) for _, line in _lines_outside_fences(text) if (m := re.match(r"^## \[([^\]]+)\]", line))]


def test_changelog_has_an_unreleased_section():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n"), "CHANGELOG.md starts with its title"
    sections = changelog_sections(text)
    assert sections and sections[0] == "Unreleased", f"the first section must be [Unreleased]: {sections}"
    unreleased = text.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0]
    assert re.search(r"^### (Added|Changed|Deprecated|Removed|Fixed|Security)$", unreleased, re.M), "Unreleased is empty"
    assert changelog_sections("# Changelog\n\n## [0.1.0] - 2026-01-01\n") == ["0.1.0"]


if __name__ == "__main__":
    found = broken_doc_links() + broken_code_mentions()
    print("\n".join(found) or f"all links resolve in {len(link_checked_documents())} documents")
    sys.exit(1 if found else 0)
