"""Keep a hand-written report (RESULTS.md) and the collector's numbers in step.

The report's prose is written by hand; its tables are not. Each table block sits between markers
that name where its numbers come from::

    <!-- poolstudy.collect docs/studies/seed_replication --out docs/results/seed_replication -->
    ... (written by this command: the collector's tables for those records) ...
    <!-- /poolstudy.collect -->

    <!-- poolstudy.bn_shift docs/bn_shift -->
    ... (the BatchNorm variance-shift records, *.json, of python -m poolstudy.bn_shift) ...
    <!-- /poolstudy.bn_shift -->

    <!-- poolstudy.figures bench-loop docs/bench/bench.json -->
    ... (a table of measured figures from committed JSON: poolstudy.results.doc_figures) ...
    <!-- /poolstudy.figures -->

    python -m poolstudy.publish RESULTS.md           # re-collect every block, rewrite it, write the figures
    python -m poolstudy.publish RESULTS.md --check   # exit 1 if any block differs from what the records give
    python -m poolstudy.publish --docs --check       # the same for README.md and every docs/*.md page

``--check`` writes nothing next to the report: the collector runs into a temporary folder, so a report
whose numbers drifted from the committed records (or records changed after the report) fails. Both
commands then check the prose (:mod:`poolstudy.results.prose_check`): a decimal number the prose quotes must be
in a table the paragraph cites, so the prose cannot drift from the records either (exit 1 otherwise).

``--docs`` adds the documentation (README.md and ``docs/*.md``, from the repository root) to the reports:
a page without blocks has only its prose checked, and docs/bad_input.md, written whole by
tests/e2e/test_bad_input.py, is left to that test. Block paths are relative to the page's folder.

A collect block whose record folders do not exist yet (a study not yet run) is *pending*: it holds a
fixed note instead of tables, ``--check`` accepts exactly that note and counts it, and the block fills
in once the records exist. A block that already holds tables never becomes pending: its check fails.
Besides the collector's options a collect block takes ``--figures a.png,b.png`` (the figures shown
under it) and ``--sections overview,metrics`` (the summary sections shown; the counts, unfinished
jobs, flags, notes and warnings are always shown).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from poolstudy.results import collector as collect, doc_figures, prose_check
from poolstudy.results.bn_shift_records import records_markdown
from poolstudy.results.report import ALWAYS_SHOWN, SECTIONS, summary_sections, write_outputs
from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import STUDY_RECORD as STUDY_JSON  # written by sweeps/make_results.py
from poolstudy.utils.io import atomic_write_text

KINDS = ("collect", "bn_shift", "figures")
BEGIN = "<!-- poolstudy.collect "
END = "<!-- /poolstudy.collect -->"
BLOCK = re.compile(r"^<!-- poolstudy\.(?P<kind>collect|bn_shift|figures) (?P<args>.*?) -->\n(?P<body>.*?)"
                   r"^<!-- /poolstudy\.(?P=kind) -->$", re.MULTILINE | re.DOTALL)
# A table made by a repository tool outside the installed package (``python -m tools.NAME ARGS``, e.g. the
# operator table in docs/architectures.md): publish cannot run the tool, a test compares the block with the
# tool's output; for the prose check it is a generated table like the others.
TOOL_BLOCK = re.compile(r"^<!-- tools\.(?P<tool>\w+) (?P<args>.*?) -->\n(?P<body>.*?)^<!-- /tools\.(?P=tool) -->$",
                        re.MULTILINE | re.DOTALL)
# The whole body of a collect block whose record folders do not exist yet.
PENDING = ("*Pending: {missing} {verb} not exist yet, so this block has no tables. Once the study's records are "
           "there (`python sweeps/make_results.py` archives them to `docs/studies/`), `python -m poolstudy.publish "
           "{report}` fills it in.*\n")
DEFAULT_FIGURES = ("accuracy.png", "accuracy_vs_compute.png", "accuracy_vs_shift.png")


@dataclass
class Block:
    args: str
    body: str
    start: int
    end: int
    kind: str = "collect"
    outer_start: int = 0  # the opening marker's first character
    outer_end: int = 0  # just after the closing marker

    @property
    def marker(self) -> str:
        return f"poolstudy.{self.kind} {self.args}"


def find_blocks(text: str, report: Path) -> list[Block]:
    blocks = [Block(m["args"], m["body"], m.start("body"), m.end("body"), m["kind"], m.start(), m.end())
              for m in BLOCK.finditer(text)]
    lines = text.splitlines()
    for kind in KINDS:
        begin, end = f"<!-- poolstudy.{kind} ", f"<!-- /poolstudy.{kind} -->"
        begins = sum(line.startswith(begin) for line in lines)
        ends = sum(line.startswith(end) for line in lines)
        complete = sum(block.kind == kind for block in blocks)
        if begins != complete or ends != complete:
            raise PoolStudyError(f"{report}: {begins} '{begin.strip()} ...' and {ends} '{end}' markers make "
                                 f"{complete} complete blocks; each opening marker (on a line of its own) needs "
                                 "a closing one of the same kind on a later line.")
    return blocks


# What a block writes into its committed --out folder (docs/results/): the PNG figures index.md and the
# report show. The vector copies and report.html (which inlines each figure as SVG) would more than double
# the folder for what anyone makes from the records with python -m poolstudy.collect (index.md names the
# command); a block may still ask for vector formats with --formats.
PUBLISHED_FORMATS = ("png",)
PUBLISHED_HTML = False


def _block_parser() -> argparse.ArgumentParser:
    parser = collect.build_parser()
    parser.add_argument("--figures", default=",".join(DEFAULT_FIGURES),
                        help="comma-separated figure files of the collector to show under the block")
    parser.add_argument("--sections", help="comma-separated summary sections to show (default: all): "
                                           + ", ".join(s for s in SECTIONS if s not in ALWAYS_SHOWN))
    return parser


def _parse(block: Block, report: Path) -> tuple[argparse.Namespace, list[str]]:
    """The block's arguments, and its words without --figures (what the collector itself was given)."""
    words = shlex.split(block.args)
    try:
        args = _block_parser().parse_args(words)
    except SystemExit:
        raise PoolStudyError(f"{report}: block '{block.args}': not valid collector arguments "
                             "(see python -m poolstudy.collect --help).") from None
    if args.out is None:
        raise PoolStudyError(f"{report}: block '{block.args}': needs --out FOLDER for its figures and tables.")
    args.quiet = True
    if args.sections is not None:
        chosen = {name.strip() for name in args.sections.split(",") if name.strip()}
        unknown = chosen - set(SECTIONS) or chosen & set(ALWAYS_SHOWN)
        if unknown or not chosen:
            raise PoolStudyError(f"{report}: block '{block.args}': --sections {args.sections!r}: choose among "
                                 f"{', '.join(s for s in SECTIONS if s not in ALWAYS_SHOWN)} (the others are "
                                 "always shown).")
        args.sections = chosen
    own = ("--figures", "--sections")  # the block's own options, not the collector's
    collector_words = [w for i, w in enumerate(words) if w not in own and (i == 0 or words[i - 1] not in own)]
    return args, collector_words


def _demote(markdown: str) -> str:
    """The collector's sections (##) sit under a study heading (##) in the report."""
    return re.sub(r"^(#+) ", lambda m: "#" + m[1] + " ", markdown, flags=re.MULTILINE)


def _study_line(folder: Path) -> str | None:
    path = folder / STUDY_JSON
    if not path.is_file():
        return None
    study = json.loads(path.read_text())
    wall = study["wall_s"]
    commands = "; ".join(f"`{c}`" for c in study["commands"])
    return (f"Ran {study['date']} on {study['machine']}: {commands}. Wall time {wall / 60:.1f} min "
            f"({wall:.0f} s) for {study['jobs']} job folders.")


def _missing_paths(args: argparse.Namespace) -> list[str]:
    return [path for path in args.paths if not Path(path).exists()]


def pending_note(missing: list[str], report: Path) -> str:
    return PENDING.format(missing=" and ".join(f"`{p}`" for p in missing), verb="does" if len(missing) == 1 else "do",
                          report=report.name)


def render_bn_shift(block: Block, report: Path) -> str:
    """A bn_shift block's body: the table of every record (``*.json``) under its paths."""
    paths = shlex.split(block.args)
    files = sorted({f for p in map(Path, paths) for f in ([p] if p.is_file() else sorted(p.glob("*.json")))})
    if not paths or not files:
        raise PoolStudyError(f"{report}: block '{block.marker}': no records (*.json) at "
                             f"{', '.join(paths) or '(none given)'}; make them with python -m poolstudy.bn_shift "
                             "--train OVERRIDES --out FOLDER.")
    records = []
    for f in files:
        try:
            records.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise PoolStudyError(f"{report}: block '{block.marker}': {f} is not readable JSON ({exc}).") from None
    try:
        table = records_markdown(records)
    except (KeyError, TypeError) as exc:
        raise PoolStudyError(f"{report}: block '{block.marker}': a record lacks {exc}; is it a poolstudy.bn_shift "
                             "record?") from None
    return (f"*Generated from {', '.join(f'`{f}`' for f in files)}; `python -m poolstudy.publish {report.name}` "
            "rewrites this block and `--check` compares it with the records.*\n\n" + table + "\n")


def render(block: Block, report: Path, figures_dir: Path | None) -> str:
    """The block's body from its records; figures go into ``figures_dir`` (the block's --out if None)."""
    if block.kind == "bn_shift":
        return render_bn_shift(block, report)
    if block.kind == "figures":
        table = doc_figures.render(shlex.split(block.args))
        # the same text in any page and from any folder: README.md and docs/*.md are published together
        return ("*Generated from the records named in the marker by `python -m poolstudy.publish --docs`, run from the "
                "repository root; `--check` compares it with them.*\n\n" + table + "\n")
    args, collector_words = _parse(block, report)
    missing = _missing_paths(args)
    if missing:
        return pending_note(missing, report)
    collection, out = collect.gather(args, collector_words)
    link_root = out
    if figures_dir is not None:
        out = figures_dir
    summary_md, files = write_outputs(collection, out, with_plots=not args.no_plots,
                                      formats=collect.figure_formats(args.formats, PUBLISHED_FORMATS),
                                      html=PUBLISHED_HTML)
    rel = os.path.relpath(link_root, report.parent).replace(os.sep, "/")
    parts = [f"*Generated by `{collection.command}`; `python -m poolstudy.publish {report.name}` rewrites "
             "this block and `--check` compares it with the records.*"]
    line = _study_line(Path(args.paths[0])) if args.paths else None
    if line:
        parts.append(line)
    if args.sections is None:
        shown = summary_md
    else:
        shown = "\n\n".join(text for key, text in summary_sections(collection)
                             if key in args.sections or key in ALWAYS_SHOWN) + "\n"
    parts.append(_demote(shown.split("\n", 1)[1].strip()))
    wanted = [name.strip() for name in args.figures.split(",") if name.strip()]
    for name in wanted:
        if name in files:
            parts.append(f"![{name}]({rel}/{name})")
    return "\n\n".join(parts) + "\n"


def publish(report: Path, check: bool, prose_only_ok: bool = False) -> int:
    """Block paths are relative to the report's folder (the repository root for RESULTS.md).

    ``prose_only_ok``: a report without generated blocks has its prose checked (a documentation page);
    otherwise it is an error.
    """
    if not report.is_file():
        raise PoolStudyError(f"{report}: no such report file; give the path of RESULTS.md.")
    here = Path.cwd()
    os.chdir(report.resolve().parent)
    try:
        return _publish(Path(report.name), check, prose_only_ok, shown=str(report))
    finally:
        os.chdir(here)


#: Documentation pages written whole by a test, which also checks them.
GENERATED_PAGES = {"docs/bad_input.md": "tests/e2e/test_bad_input.py"}


def documentation_pages(root: Path) -> list[Path]:
    """README.md and ``docs/*.md`` under ``root``, without the pages a test writes whole."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [p for p in pages if p.is_file() and p.relative_to(root).as_posix() not in GENERATED_PAGES]


def _rewrite_args(shown: str) -> str:
    """The publish arguments that rewrite the page ``shown``: RESULTS.md (or any report) by name, README.md
    and docs/ pages with --docs."""
    page = Path(shown)
    return "--docs" if page.name == "README.md" or page.parent.name == "docs" else shown


def _publish(report: Path, check: bool, prose_only_ok: bool = False, shown: str | None = None) -> int:
    """``report``: the file's name in the current folder (its own); ``shown``: the path messages name."""
    shown = shown or str(report)
    text = report.read_text()
    blocks = find_blocks(text, report)
    tool_tables = [prose_check.Span(m.start(), m.end(), m["body"]) for m in TOOL_BLOCK.finditer(text)]
    if not blocks and prose_only_ok:
        problems = prose_check.check(text, tool_tables, name=shown)
        _print_prose(shown, problems)
        return 1 if problems else 0
    if not blocks:
        raise PoolStudyError(f"{report}: holds no '{BEGIN}ARGS -->' (or poolstudy.bn_shift) blocks, so there "
                             "is nothing to publish or check.")
    stale: list[tuple[Block, str]] = []
    fresh: list[str] = []
    with tempfile.TemporaryDirectory(prefix="poolstudy-publish-") as tmp:
        for i, block in enumerate(blocks):
            body = render(block, report, Path(tmp) / str(i) if check else None)
            fresh.append(body)
            if body != block.body:
                stale.append((block, body))
    pending = sum(body.startswith(PENDING.split("{", 1)[0]) for body in fresh)
    pending_text = f"; {pending} pending (record folders not there yet)" if pending else ""
    # The prose (as in the file, so that line numbers match it) against the tables as the records give them now.
    problems = prose_check.check(text, [*tool_tables, *(prose_check.Span(b.outer_start, b.outer_end, body)
                                                        for b, body in zip(blocks, fresh))], name=shown)
    if check:
        for block, body in stale:
            diff = difflib.unified_diff(block.body.splitlines(), body.splitlines(), "in the report",
                                        "from the records", lineterm="", n=1)
            print(f"{shown}: block '{block.marker}' differs from what its records give:", file=sys.stderr)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        _print_prose(shown, problems)
        print(f"{shown}: {len(blocks) - len(stale)} of {len(blocks)} blocks match the records{pending_text}"
              + ("" if not stale else f"; run python -m poolstudy.publish {_rewrite_args(shown)} to rewrite them"),
              file=sys.stderr)
        return 1 if stale or problems else 0
    for block, body in sorted(stale, key=lambda pair: pair[0].start, reverse=True):
        text = text[:block.start] + body + text[block.end:]
    if stale:
        atomic_write_text(report, text)
    _print_prose(shown, problems)
    print(f"{shown}: {len(blocks)} blocks collected, {len(stale)} rewritten{pending_text}", file=sys.stderr)
    return 1 if problems else 0


def _print_prose(report: str, problems: list[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{report}: {len(problems)} number(s) in the prose are not in the tables they cite "
              "(rule: python -m pydoc poolstudy.results.prose_check)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poolstudy.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="*", type=Path, metavar="report",
                        help="report files (default: RESULTS.md, unless --docs is given)")
    parser.add_argument("--check", action="store_true",
                        help="compare every block with the collector's output; write nothing; exit 1 on a difference")
    parser.add_argument("--docs", action="store_true",
                        help="also README.md and docs/*.md of the current folder (the repository root); pages "
                             "without blocks have their prose checked")
    args = parser.parse_args(argv)
    reports = [(report, False) for report in args.reports]
    if args.docs:
        pages = [page.relative_to(Path.cwd()) for page in documentation_pages(Path.cwd())]
        if not pages:
            print("error: --docs: no README.md or docs/*.md here; run it from the repository root.", file=sys.stderr)
            return 2
        reports += [(page, True) for page in pages]
    if not reports:
        reports = [(Path("RESULTS.md"), False)]
    status = 0
    try:
        for report, prose_only_ok in reports:
            status = max(status, publish(report, args.check, prose_only_ok))
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
