"""The README and docs/ stay true: links and anchors resolve, the option reference is the code's, no
run history outside the changelog."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from airflow_aws_batch import options

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
CHANGELOG = ROOT / "CHANGELOG.md"
PAGES = [README, *DOCS, CHANGELOG]
#: Pages that must hold no commit hash or run history (the changelog is where history goes).
CURRENT_PAGES = [README, *DOCS]

FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.MULTILINE)


def _prose(text: str) -> str:
    """``text`` without fenced code blocks, where `[x](y)` and `# ...` are code, not Markdown."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for heading in HEADING.findall(_prose(page.read_text())):
        base = slug(heading)
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def test_slugs_follow_github() -> None:
    assert slug("11. Configure Airflow and check") == "11-configure-airflow-and-check"
    assert (
        slug("Keeping tokens out of Batch: `workload_store`") == "keeping-tokens-out-of-batch-workload_store"
    )
    assert slug("The Amazon provider's section") == "the-amazon-providers-section"


@pytest.mark.parametrize("page", [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(
                f"{target}: no {resolved.relative_to(ROOT) if ROOT in resolved.parents else resolved}"
            )
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.name}")
    assert not broken, "\n".join(broken)


def test_readme_is_short_and_maps_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    mapped = set(LINK.findall(text.split("## Documentation", 1)[1].split("\n## ", 1)[0]))
    for page in DOCS:
        assert f"docs/{page.name}" in mapped, f"the README's map does not link docs/{page.name}"


def test_configuration_page_is_generated_from_the_option_table() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert options.splice(page, options.markdown()) == page, (
        "docs/configuration.md differs from the option table in options.py: run `make docs`"
    )


def test_every_option_has_its_section_in_the_configuration_page() -> None:
    found = anchors(ROOT / "docs" / "configuration.md")
    assert {spec.name for spec in options.OPTIONS} <= found


def test_the_generated_block_follows_a_changed_description() -> None:
    """The comparison above can fail: a description changed in the code changes the block."""
    spec = options.OPTIONS[0]
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert spec.description in page
    stale = page.replace(spec.description, spec.description + " Changed.")
    assert options.splice(stale, options.markdown()) != stale


# A commit hash: 7-40 hex digits with a letter and a digit, not part of a longer word, a UUID or a
# derived job definition name (which end in -<16 hex digits>).
HASH = re.compile(r"(?<![\w-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])")
HISTORY = re.compile(
    r"\b(the run before|previous (full )?run|same morning|at commit|\(commit|run of \d{4}-\d\d-\d\d)",
    flags=re.IGNORECASE,
)


@pytest.mark.parametrize("page", [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in CURRENT_PAGES])
def test_no_commit_hash_or_run_history(page: Path) -> None:
    text = page.read_text()
    assert not HASH.findall(text), HASH.findall(text)
    assert not HISTORY.findall(text), [m.group(0) for m in HISTORY.finditer(text)]


def test_the_history_patterns_catch_what_they_are_for() -> None:
    assert HASH.findall("Latest make bench (commit 2a96630, 2026-12-04)") == ["2a96630"]
    assert HASH.findall("p99 168 ms at 04ff09e") == ["04ff09e"]
    assert not HASH.findall("job 58cd0a45-e153-4c6a-9593-c4875c2ab7a3, airflow-task-e739ea19c24796e3:1")
    assert HISTORY.search("The run before (8e4a319, 2026-12-04) met every target")
