"""The project's text: a README short enough to be a front door, links that resolve, and no prose
that narrates how the work went instead of what the project is."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_CHARS = 12_000
SKIP_DIRS = {"runs", "build", "node_modules", "__pycache__"}

# Work-history narration. Kafka's session timeout ("session_timeout_ms", "session timeout 6 s") is
# not matched: a digit must follow "session(s)" directly.
HISTORY = [
    re.compile(r"\bsessions?\s+[0-9]", re.IGNORECASE),
    re.compile(r"\bthis\s+session\b", re.IGNORECASE),
    re.compile(r"\blent\b", re.IGNORECASE),
    # a commit id named in prose: "commit 1a2b3c4", "commits 1a2b3c4 and ..."
    re.compile(r"\bcommit(?:s|ted)?\b[^\n]{0,20}?\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b",
               re.IGNORECASE),
]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def project_files(*suffixes: str) -> list[Path]:
    """Every file of the project with one of these suffixes: not virtualenvs, .git or build output."""
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info") for p in rel[:-1]):
            continue
        if path.suffix in suffixes and path.is_file():
            found.append(path)
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"(?m)^#{1,6}\s+(.+)$", doc.read_text(encoding="utf-8"))}


def test_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= README_MAX_CHARS, f"README.md has {len(text)} characters, at most {README_MAX_CHARS}"
    assert text.splitlines()[2:6] == ["```bash",
                                      "make demo    # set-up + the main job on the embedded synthetic complaints "
                                      "(about 8 minutes on 2 cores)",
                                      "make test    # set-up + lint + the test suite (real Redis, real "
                                      "Kafka-protocol broker, real Prometheus)", "```"]


def test_no_work_history_in_project_text() -> None:
    hits = []
    for path in project_files(".md", ".py"):
        if path == Path(__file__).resolve():  # its examples below are the patterns themselves
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if any(p.search(line) for p in HISTORY):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not hits, "prose that narrates work history:\n" + "\n".join(hits)


@pytest.mark.parametrize("line, bad", [
    ("as measured in session 4 (a busier box)", True),
    ("no GPU was lent in sessions 1–6", True),
    ("until this session a resumed grid trained new vectors", True),
    ("tried in commit d2f90e0, removed in the next one", True),
    ("session_timeout_ms=6000", False),
    ("broker frozen 15 s (session timeout 6 s)", False),
    ("model version fmlc-c24f961f1d1c, silent and excellent", False),
])
def test_history_patterns(line: str, bad: bool) -> None:
    assert any(p.search(line) for p in HISTORY) == bad


def test_relative_links_resolve() -> None:
    broken, checked = [], 0
    for doc in project_files(".md"):
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            checked += 1
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert checked > 20 and not broken, "broken links:\n" + "\n".join(broken)
