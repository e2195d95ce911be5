"""Numbers quoted in a report's prose must come from the generated tables they cite.

``python -m poolstudy.publish RESULTS.md --check`` runs this after comparing the generated blocks, on the
report with every block's text as the records give it now. The rule:

1. **What is checked.** Every number in the prose (text outside generated blocks, headings, inline code,
   fenced code blocks, link targets and HTML comments) written with a decimal point (``99.11``, ``3.7``) or with thousands
   separators (``52,174``). Plain integers (``5 seeds``, ``3 px``, ``2019``, ``29×``) are counts, sizes and
   years far more often than results, and are not checked.
2. **Where it must be.** A *paragraph* (text between blank lines; each bullet of a list is one) cites the
   generated blocks of its own ``## `` section and, by number, those of the numbered study sections
   (``## 3. ...``) it names: ``(3)``, ``(1, 2)``, ``(2 and 5)``, ``study 4``, ``studies 2–4``. Each checked
   number must appear in one of those blocks, as printed there or rounded half-up to the prose's fewer
   decimals (``95.5`` for ``95.47``); its sign is ignored (``0.17`` for a Δ of ``-0.17``). A paragraph that
   quotes a checked number but cites no block is an error.
3. **Numbers from elsewhere** (a paper's published figure, a config default, a ratio worked out from two
   table entries) are listed in a comment inside the paragraph, each list with its source after a colon:
   ``<!-- poolstudy.numbers 9.08 10.19: Springenberg et al. (2015), Table 3 -->``. A listed number must
   occur in the paragraph (so the list cannot go stale), and the source must not be empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# A number not glued to a word, a version (2.14.1) or an identifier (conv3, x86_64, 3e-3).
NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w,]\d|\w|\.\d)")
ALLOW = re.compile(r"<!--\s*poolstudy\.numbers\s+(?P<body>.*?)-->", re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
CODE = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
STUDY_HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)
_LIST = r"\d+(?:\s*(?:,|and|–|-|to)\s*\d+)*"
CITATION = re.compile(rf"\(({_LIST})\)|\bstud(?:y|ies)\s+({_LIST})")
FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.MULTILINE | re.DOTALL)
BULLET = re.compile(r"^\s*(?:[-*+]|\d+\.)\s", re.MULTILINE)


@dataclass
class Span:
    """A generated block's whole extent in the report (markers included) and its text."""

    start: int
    end: int
    body: str


def _numbers(text: str) -> list[tuple[str, int]]:
    """(number as written, offset) of the checked numbers: decimals and separator-grouped integers."""
    found = []
    for m in NUMBER.finditer(text):
        if m[2] or "," in m[1]:
            found.append((m[0], m.start()))
    return found


def _value(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


class TableNumbers:
    """Every number a set of blocks prints, for the lookup of rule 2."""

    def __init__(self, bodies: list[str]):
        self.exact: set[Decimal] = set()
        self.by_decimals: dict[int, set[Decimal]] = {}
        for body in bodies:
            for m in NUMBER.finditer(body):
                value = _value(m[0])
                self.exact.add(value)
                self.by_decimals.setdefault(_decimals(m[0]), set()).add(value)

    def holds(self, quoted: str) -> bool:
        value, places = _value(quoted), _decimals(quoted)
        if value in self.exact:
            return True
        step = Decimal(1).scaleb(-places)
        return any(v.quantize(step, rounding=ROUND_HALF_UP) == value
                   for d, values in self.by_decimals.items() if d > places for v in values)


def _expand(listing: str) -> set[int]:
    numbers: set[int] = set()
    for part in re.split(r"\s*(?:,|and)\s*", listing):
        bounds = re.split(r"\s*(?:–|-|to)\s*", part)
        if len(bounds) == 2 and all(b.isdigit() for b in bounds):
            numbers.update(range(int(bounds[0]), int(bounds[1]) + 1))
        elif part.strip().isdigit():
            numbers.add(int(part))
    return numbers


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def check(text: str, blocks: list[Span], name: str = "RESULTS.md") -> list[str]:
    """The rule's violations in ``text`` (the report with each block's current text), one message each."""
    blocks = sorted(blocks, key=lambda b: b.start)
    # Prose: the report with block extents blanked (offsets kept, so line numbers stay right).
    chars = list(text)
    for b in blocks:
        for i in range(b.start, b.end):
            if chars[i] != "\n":
                chars[i] = " "
    for m in FENCE.finditer(text):  # commands and code: examples, not quoted results
        for i in range(m.start(), m.end()):
            if chars[i] != "\n":
                chars[i] = " "
    prose = "".join(chars)

    heads = [(m.start(), m.group(0)) for m in re.finditer(r"^## .*$", prose, re.MULTILINE)]
    bounds = [0, *(start for start, _ in heads), len(text)]
    titles = ["(before the first section)", *(title for _, title in heads)]
    section_of = lambda offset: max(i for i, start in enumerate(bounds[:-1]) if start <= offset)  # noqa: E731
    blocks_in: dict[int, list[str]] = {}
    for b in blocks:
        blocks_in.setdefault(section_of(b.start), []).append(b.body)
    study_section = {int(m[1]): section_of(m.start()) for m in STUDY_HEADING.finditer(prose)}

    problems = []
    for index in range(len(titles)):
        start, end = bounds[index], bounds[index + 1]
        for unit_start, unit in _units(prose, start, end):
            problems += _check_unit(text, name, titles[index], index, unit_start, unit, blocks_in, study_section)
    return problems


def _units(prose: str, start: int, end: int):
    """(offset, text) of each paragraph and list item between ``start`` and ``end``."""
    for m in re.finditer(r"(?:[^\n]*\S[^\n]*\n?)+", prose[start:end]):
        para, base = m[0], start + m.start()
        cuts = [0, *(b.start() for b in BULLET.finditer(para) if b.start() > 0), len(para)]
        for a, b in zip(cuts, cuts[1:]):
            yield base + a, para[a:b]


def _check_unit(text, name, title, index, offset, unit, blocks_in, study_section) -> list[str]:
    problems = []
    allowed: set[Decimal] = set()
    unit = CODE.sub(lambda m: " " * len(m[0]), unit)  # a comment shown as code is an example, not a list
    for m in ALLOW.finditer(unit):
        listing, colon, source = m["body"].partition(":")
        where = f"{name}:{_line(text, offset + m.start())}"
        if not colon or not source.strip():
            problems.append(f"{where}: '<!-- poolstudy.numbers {m['body'].strip()} -->' names no source; write "
                            "<!-- poolstudy.numbers 9.08 10.19: where they come from -->.")
        bare = COMMENT.sub(" ", unit)
        quoted = {_value(n) for n, _ in _numbers(bare)}
        for number in listing.split():
            if not NUMBER.fullmatch(number):
                problems.append(f"{where}: '{number}' in a poolstudy.numbers list is not a number.")
                continue
            if _value(number) not in quoted:
                problems.append(f"{where}: {number} is listed in poolstudy.numbers but the paragraph does not "
                                "quote it; remove it from the list.")
            allowed.add(_value(number))
    readable = LINK_TARGET.sub(lambda m: "]" + " " * (len(m[0]) - 1), COMMENT.sub(lambda m: " " * len(m[0]), unit))
    lines = [line if not line.lstrip().startswith("#") else " " * len(line) for line in readable.split("\n")]
    readable = "\n".join(lines)
    cited_sections = {index}
    for m in CITATION.finditer(readable):
        for number in _expand(m[1] or m[2]):
            if number in study_section:
                cited_sections.add(study_section[number])
    bodies = [body for s in sorted(cited_sections) for body in blocks_in.get(s, [])]
    tables = TableNumbers(bodies)
    studies = sorted(n for n, s in study_section.items() if s in cited_sections and s != index)
    cites = "the blocks of this section" + (f" and of studies {', '.join(map(str, studies))}" if studies else "")
    for number, at in _numbers(readable):
        if _value(number) in allowed:
            continue
        where = f"{name}:{_line(text, offset + at)}"
        if not bodies:
            problems.append(f"{where}: {number} (section '{title.lstrip('# ')}') is quoted but the paragraph "
                            "cites no generated table: name the study that prints it, e.g. (1), or list it in "
                            f"<!-- poolstudy.numbers {number}: SOURCE -->.")
        elif not tables.holds(number):
            problems.append(f"{where}: {number} (section '{title.lstrip('# ')}') is in none of the tables the "
                            f"paragraph cites ({cites}): quote it as a table prints it (or rounded), cite the study "
                            f"whose table has it, or list it in <!-- poolstudy.numbers {number}: SOURCE -->.")
    return problems
