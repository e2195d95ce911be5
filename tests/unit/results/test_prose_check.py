"""The rule for numbers in a report's prose (poolstudy.results.prose_check), on small made-up reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolstudy.results import prose_check
from poolstudy.results.publish import find_blocks

TABLE_1 = "| variant | acc |\n|---|---|\n| maxpool | 99.11 ± 0.11 |\n| strided | 98.94 ± 0.05 |\n| Δ | -0.17 |\n| MACs | 1,021,200 |\n"
TABLE_2 = "| variant | acc |\n|---|---|\n| maxpool | 85.72 ± 0.26 |\n| shift | 95.47 |\n"


def report(prose_1: str, prose_2: str = "", plain: str = "") -> str:
    return (f"# R\n\n## In plain words\n\n{plain}\n\n## 1. Study one\n\n{prose_1}\n\n"
            f"<!-- poolstudy.collect a --out x -->\n{TABLE_1}<!-- /poolstudy.collect -->\n\n"
            f"## 2. Study two\n\n{prose_2}\n\n<!-- poolstudy.collect b --out y -->\n{TABLE_2}<!-- /poolstudy.collect -->\n")


def problems(text: str) -> list[str]:
    spans = [prose_check.Span(b.outer_start, b.outer_end, b.body) for b in find_blocks(text, Path("R.md"))]
    return prose_check.check(text, spans, name="R.md")


@pytest.mark.parametrize("sentence", [
    "Max-pooling scored 99.11 %, strided 98.94 %.",    # as printed
    "A gap of 0.17 points.",                           # the sign is ignored
    "Max-pooling scored 99.1 %.",                      # rounded half-up to fewer decimals
    "It costs 1,021,200 MACs.",                        # thousands separators
    "5 seeds, 3 px, 2019, 29× the MACs, conv3, 3e-3.",  # plain integers and identifiers are not checked
    "`trainer.lr=0.123` and [a link](docs/0.55.png).",  # code and link targets are not prose
])
def test_numbers_the_sections_table_holds_pass(sentence):
    assert problems(report(sentence)) == []


@pytest.mark.parametrize("sentence, number", [
    ("Max-pooling scored 99.12 %.", "99.12"),          # drifted
    ("A gap of 0.18 points.", "0.18"),
    ("Max-pooling scored 99.2 %.", "99.2"),            # 99.11 rounds to 99.1
    ("It costs 1,021,201 MACs.", "1,021,201"),
    ("Tuned: 85.72 %.", "85.72"),                      # in study 2's table, not cited here
])
def test_a_number_not_in_the_cited_tables_is_named_with_its_line(sentence, number):
    text = report(sentence)
    (problem,) = problems(text)
    line = text[:text.index(sentence)].count("\n") + 1
    assert problem.startswith(f"R.md:{line}: {number} (section '1. Study one') is in none of the tables")


def test_citations_by_study_number_widen_the_tables_a_paragraph_may_quote():
    assert problems(report("", plain="Max-pooling: 99.11 % (1), tuned 85.72 % (2).")) == []
    assert problems(report("", plain="Both, studies 1–2: 99.11 and 85.72 %.")) == []
    assert problems(report("", plain="- One (1): 99.11 %.\n- Two (study 2): 85.72 %.")) == []
    # each list item cites for itself
    (problem,) = problems(report("", plain="- One (1): 99.11 %.\n- Two: 85.72 %."))
    assert "85.72" in problem and "cites no generated table" in problem
    # a study section's own paragraph may cite another study too; 95.5 rounds study 2's 95.47
    assert problems(report("Tuned: 85.72 % and 95.5 % (2).")) == []


def test_allow_lists_need_a_source_and_a_use():
    ok = "The paper reports 9.08 %.\n<!-- poolstudy.numbers 9.08: Springenberg et al. (2015) -->"
    assert problems(report(ok)) == []
    (problem,) = problems(report("The paper reports 9.08 %.\n<!-- poolstudy.numbers 9.08 -->"))
    assert "names no source" in problem
    (problem,) = problems(report("We measured 99.11 %.\n<!-- poolstudy.numbers 9.08: the paper -->"))
    assert "9.08 is listed" in problem and "does not quote it" in problem
    assert len(problems(report("The paper reports 9.08 %.\n\n<!-- poolstudy.numbers 9.08: the paper -->"))) == 2
    # an example shown as code is not a list
    assert problems(report("Write `<!-- poolstudy.numbers ... : source -->`.")) == []


def test_code_blocks_are_examples_not_quoted_results():
    """A fenced block (commands, configs) is skipped; the same number in the paragraph beside it is checked."""
    fenced = "Run it:\n\n```bash\npython train.py model.dropout=0.25 optimizer.lr=0.003\n```\n"
    assert problems(report(fenced)) == []
    indented = "- a list item with code:\n\n  ```bash\n  python train.py model.dropout=0.25\n  ```\n"
    assert problems(report(indented)) == []
    found = problems(report(fenced + "\nWith dropout 0.25 it is slower.\n"))
    assert len(found) == 1 and "0.25 (section '1. Study one')" in found[0]
