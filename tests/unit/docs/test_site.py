"""The documentation: a Sphinx site that builds without warnings, links that resolve, figures that match records."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from poolstudy.results.publish import documentation_pages, main as publish

DOCS = ROOT / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
#: Pages other branches write; the coordinator adds them to the toctree when they arrive.
PAGES_OF_OTHER_BRANCHES = ("architectures", "tracking")


@pytest.mark.slow
def test_site_builds_without_warnings(tmp_path):
    """sphinx-build -W: a broken link, a page outside the toctree or a docstring that does not render fails."""
    pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]' (setup.sh does)")
    pytest.importorskip("myst_parser", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                           str(DOCS), str(out), "-d", str(tmp_path / "doctrees")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    api = (out / "api.html").read_text()
    # the API reference rendered the docstrings, not only the module names
    for name in ("poolstudy.models.create_model", "poolstudy.evaluation.invariance.probe_invariance",
                 "poolstudy.results.stats.compare", "poolstudy.data.dataset.load_splits"):
        assert f'id="{name}"' in api, name
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert {p.stem for p in out.glob("*.html")} >= pages - {"README"}


def test_every_page_is_in_the_toctree():
    index = (DOCS / "index.md").read_text()
    listed = set(re.findall(r"^([a-z_]+)$", index, re.MULTILINE))
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    assert pages - set(PAGES_OF_OTHER_BRANCHES) <= listed, sorted(pages - listed)
    assert listed <= pages | set(PAGES_OF_OTHER_BRANCHES), sorted(listed - pages)


def test_local_links_resolve():
    """Every relative link of README.md and docs/*.md names a file that exists (anchors aside)."""
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = FENCE.sub("", page.read_text())
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_readme_is_the_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "python train.py -m model=maxpool,strided dataset=mnist,cifar10" in text  # the design card
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = ci.strip().splitlines()[-1].strip()
    assert test_command == ".venv/bin/python -m pytest -q"
    assert f"```bash\n{test_command}\n```" in text  # the README's test command is what CI runs
    for page in ("data", "operators", "studies", "outputs", "reproducibility", "scale_out", "collector",
                 "benchmark", "bad_input"):
        assert f"(docs/{page}.md)" in text, page
    assert "<!-- poolstudy.collect " in text and "<!-- poolstudy.figures job-time " in text


def test_documentation_figures_match_their_records(capsys):
    """Every generated block of README.md and docs/*.md equals what its records give; the prose quotes none else."""
    pages = documentation_pages(ROOT)
    assert ROOT / "README.md" in pages and DOCS / "benchmark.md" in pages and DOCS / "bad_input.md" not in pages
    here = Path.cwd()
    try:
        import os
        os.chdir(ROOT)
        status = publish(["--docs", "--check"])
    finally:
        os.chdir(here)
    assert status == 0, capsys.readouterr().err


def test_documentation_check_catches_drift(tmp_path, capsys):
    """A figure edited in a block, a changed record, and a hand-typed measurement in the prose each fail."""
    shutil.copytree(DOCS / "bench", tmp_path / "docs" / "bench")
    page = tmp_path / "docs" / "benchmark.md"
    text = (DOCS / "benchmark.md").read_text()
    page.write_text(text)
    (tmp_path / "README.md").write_text("# x\n\nNo figures here.\n")
    here = Path.cwd()
    import os
    os.chdir(tmp_path)
    try:
        assert publish(["--docs", "--check"]) == 0
        edited = re.sub(r"\*\*(\d+\.\d+) \(", "**9.99 (", text, count=1)
        assert edited != text
        page.write_text(edited)
        capsys.readouterr()
        assert publish(["--docs", "--check"]) == 1
        assert "block 'poolstudy.figures bench-loop bench/bench.json' differs" in capsys.readouterr().err
        page.write_text(text)
        bench = tmp_path / "docs" / "bench" / "options.json"
        bench.write_text(bench.read_text().replace('"speedup_vs_base": 1.0', '"speedup_vs_base": 1.5', 1))
        assert publish(["--docs", "--check"]) == 1
        assert "bench-options" in capsys.readouterr().err
        shutil.copy(DOCS / "bench" / "options.json", bench)
        (tmp_path / "README.md").write_text("# x\n\n## Speed\n\nAn epoch takes 6.54 s here.\n")
        assert publish(["--docs", "--check"]) == 1
        assert "README.md:5: 6.54 (section 'Speed') is quoted but the paragraph cites no generated table" in \
            capsys.readouterr().err
    finally:
        os.chdir(here)
