"""The documentation holds together: links and anchors resolve, the README stays short and keeps its set-up
commands, and the product text speaks of the product, not of how it was developed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXPERIMENTS = ROOT / "docs" / "experiments"
META = ROOT / "worldsim" / "pretrained" / "pushworld-64" / "meta.json"
MARKDOWN = sorted([README, ROOT / "bridges" / "PROTOCOL.md", *(ROOT / "docs").rglob("*.md")])
SETUP_COMMANDS = (
    "python -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . && "
    "worldsim demo --out demo-out",
    'python -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[dev]" && '
    "pytest",
)
README_MAX_LINES = 180
# how the project was developed, which the product text must not speak of (each phrase is split in two, so that
# this file does not match the phrases it looks for)
PHRASES = [("[Ss]ess", "ion [0-9]+"), ("device ", "time"), ("warm ", "machine"), ("still ", "warm"),
           ("H200 ", "image"), ("the issue.s ", "targets"), ("DESIGN ", "§"), ("load ", "average"), ("ren", "ted"),
           ("beside another ", "run"), (r"\b[0-9]{1,2}:[0-9]{2} ", r"UTC\b")]
HISTORY = re.compile("|".join(a + b for a, b in PHRASES))
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> list[str]:
    """The lines, those of fenced code blocks blanked (code is neither linked nor a heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and _ (unicode letters too, as GitHub does)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 … suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code (link text may wrap across lines)."""
    text = "\n".join(re.sub(r"`[^`]*`", "", line) for line in _prose(path.read_text(encoding="utf-8")))
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(text)]


def test_links_are_found_across_wrapped_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [the wrapped\ntext](a.md#b) and `[code](x.md)`.\n```\n[fenced](y.md)\n```\n![pic](p.png)\n")
    assert links(page) == [(1, "a.md#b"), (6, "p.png")]


def test_slugs_follow_github():
    assert _slug("Status: what the bundled model has learned") == "status-what-the-bundled-model-has-learned"
    assert _slug("How much one run's count varies (run 15)") == "how-much-one-runs-count-varies-run-15"
    assert _slug("Example: `ping`, byte by byte") == "example-ping-byte-by-byte"
    assert _slug("Legs 10 and 11: contact data") == "legs-10-and-11-contact-data"
    assert _slug("Encryption (CURVE)") == "encryption-curve"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(path: Path):
    broken = []
    for line, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: … are not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"line {line}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"line {line}: {target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)} has links that do not resolve:\n" + "\n".join(broken)


def test_readme_is_short_and_keeps_the_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    for command in SETUP_COMMANDS:
        assert command in text, f"README.md lost the set-up command: {command}"


def _product_text() -> list[Path]:
    """README, docs outside docs/experiments (a dated history), the bundled meta.json, and the code's text."""
    docs = [p for p in (ROOT / "docs").rglob("*.md") if EXPERIMENTS not in p.parents]
    code = [p for d in ("worldsim", "envs", "bridges", "examples", "tests", "scripts") for p in (ROOT / d).rglob("*")
            if p.suffix in (".py", ".md") and p != Path(__file__).resolve()]
    return [README, META, *docs, *code]


def test_product_text_does_not_speak_of_its_development():
    hits = []
    for path in _product_text():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if m := HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {m.group(0)!r} in {line.strip()[:100]}")
    assert not hits, "development history in the product:\n" + "\n".join(hits)


def test_bundled_meta_is_valid_json_with_its_training_legs():
    meta = json.loads(META.read_text(encoding="utf-8"))
    for leg in meta["training_legs"]:
        assert isinstance(leg["leg"], int) and isinstance(leg["steps"], int) and isinstance(leg["batch"], int)


def test_the_history_phrases_are_caught():
    for text in ("in sess" + "ion 14 we", "15 minutes of device" + " time", "the H200 " + "image has",
                 "at 20:25 " + "UTC"):
        assert HISTORY.search(text), text
    assert not HISTORY.search("a session of 14 steps")
