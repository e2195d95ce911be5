"""``report.html``: the collector's report as one self-contained file to pass around.

Everything is inside the file: the tables, flags, notes and warnings of ``summary.md`` (rendered from
its Markdown by markdown-it-py with raw HTML disabled, so a path or message holding ``<`` stays text),
the rank table, every figure inlined as an SVG data URI (vector, sharp at any zoom; its PNG with
``--formats png``) and the commands that made the results and the report. It loads nothing: no scripts, fonts or style sheets from
elsewhere, and its Content-Security-Policy (``default-src 'none'``) lets a browser load nothing but
the inlined images, so it opens offline and makes no request.
"""

from __future__ import annotations

import base64
import html
import shlex
from pathlib import Path
from typing import Any

import yaml

from poolstudy.results.rank import Ranking, ranking_markdown

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
TITLES = {"overview": "Overview", "metrics": "Two metrics", "datasets": "Per dataset", "tuning": "Tuned vs untuned",
          "hpo": "HPO studies", "unfinished": "Not finished", "not_counted": "Not counted", "flags": "Flags",
          "notes": "Notes", "warnings": "Warnings"}
STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 1.5em 3em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
nav ul { display: flex; flex-wrap: wrap; gap: .4em 1.2em; list-style: none; padding: 0; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d0d5; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f3f3f6; } tr:nth-child(even) td { background: #fafafc; }
code, pre { font: .88em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f3f6; padding: .1em .3em;
            border-radius: 3px; } pre { padding: .6em; overflow-x: auto; white-space: pre-wrap; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; margin-top: .3em; }
section.problems { background: #fff6e0; border-left: 4px solid #e0a800; padding: .1em 1em; }
.banner { background: #fff6e0; border-left: 4px solid #e0a800; padding: .4em 1em; }
"""


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # commonmark without raw HTML (escaped as text), with tables; no images: nothing may be fetched
    return MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")


def _svg_size(svg: bytes) -> tuple[str, str] | None:
    """The width and height attributes of an SVG's root element (matplotlib writes them in pt)."""
    import re

    head = svg[:2000].decode("utf-8", "replace")
    match = re.search(r"<svg[^>]*?\swidth=\"([\d.]+)pt\"[^>]*?\sheight=\"([\d.]+)pt\"", head, re.DOTALL)
    if not match:
        return None
    # CSS px = 0.75 pt
    return f"{float(match.group(1)) / 0.75:.0f}", f"{float(match.group(2)) / 0.75:.0f}"


def figure_html(out: Path, name: str, caption: str, formats: tuple[str, ...] = ("png", "svg")) -> str:
    """A <figure> with the figure inlined: its SVG when written, else its PNG."""
    svg = out / Path(name).with_suffix(".svg").name
    path, mime = (svg, "image/svg+xml") if svg.is_file() else (out / name, "image/png")
    data = path.read_bytes()
    size = _svg_size(data) if mime == "image/svg+xml" else None
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    anchor = "fig-" + Path(name).stem
    return (f'<figure id="{anchor}"><img src="data:{mime};base64,{base64.b64encode(data).decode()}" '
            f'alt="{html.escape(caption or name)}"{dims}>'
            f"<figcaption><b>{html.escape(Path(name).stem)}</b>: {html.escape(caption)} "
            f"(also <code>{html.escape(Path(name).stem)}.{'/.'.join(formats)}</code> next to this report)"
            "</figcaption></figure>")


def _commands(inputs: list[str]) -> list[str]:
    """The commands that made the records: each study.json's commands (sweeps/make_results.py) and, for every
    multirun folder, ``python train.py -m`` with the overrides its multirun.yaml recorded."""
    commands: list[str] = []
    for root in map(Path, inputs):
        if not root.is_dir():
            continue
        for study in sorted(root.rglob("study.json")):
            try:
                import json

                commands += [str(c) for c in json.loads(study.read_text()).get("commands", [])]
            except (OSError, ValueError, AttributeError):
                continue
        for multirun in sorted(root.rglob("multirun.yaml")):
            try:
                hydra_cfg = (yaml.safe_load(multirun.read_text()) or {}).get("hydra", {})
                overrides = hydra_cfg.get("overrides", {})
                words = [o for o in overrides.get("hydra", []) if not o.startswith("hydra.mode=")]
                words += list(overrides.get("task", []))
            except (OSError, yaml.YAMLError, AttributeError):
                continue
            command = shlex.join(["python", "train.py", "-m", *map(str, words)])
            if command not in commands:
                commands.append(f"{command}   # {multirun.parent}")
    return commands


def render(col: Any, sections: list[tuple[str, str]], figures: list[tuple[str, str]], out: Path,
           ranking: Ranking | None, formats: tuple[str, ...] = ("png", "svg")) -> str:
    """The report.html text. ``sections``: summary.md as (key, Markdown) pairs (``report.summary_sections``);
    ``figures``: (PNG name, caption) of the figures written into ``out`` in ``formats``."""
    md = _markdown()
    head_key, head_md = sections[0]
    title_line, _, head_rest = head_md.partition("\n")
    title = title_line.lstrip("# ").strip()
    parts = [f"<h1>poolstudy report: {html.escape(title)}</h1>", md.render(head_rest)]
    if col.flags or col.excluded:
        parts.append('<p class="banner">Read the <a href="#flags">Flags</a> and <a href="#not_counted">Not counted'
                     "</a> sections before comparing numbers.</p>")
    toc = [(key, TITLES.get(key, key)) for key, _ in sections[1:]]
    if ranking is not None:
        toc.insert(min(2, len(toc)), ("ranks", "Ranks across datasets"))
    if figures:
        toc.append(("figures", "Figures"))
    toc.append(("commands", "Commands"))
    parts.append("<nav><ul>" + "".join(f'<li><a href="#{k}">{html.escape(t)}</a></li>' for k, t in toc) + "</ul></nav>")
    body = []
    for key, text in sections[1:]:
        klass = ' class="problems"' if key in ("flags", "not_counted", "warnings") else ""
        body.append((key, f'<section id="{key}"{klass}>{md.render(text)}</section>'))
    if ranking is not None:
        from poolstudy.results.rank import caption

        ranks = (f'<section id="ranks"><h2>Ranks across datasets</h2><p>{html.escape(caption(ranking))}</p>'
                 f"{md.render(ranking_markdown(ranking))}</section>")
        body.insert(min(2, len(body)), ("ranks", ranks))
    parts += [text for _, text in body]
    if figures:
        parts.append('<section id="figures"><h2>Figures</h2>' +
                     "".join(figure_html(out, name, caption, formats) for name, caption in figures) + "</section>")
    commands = [col.command, *_commands(col.inputs)]
    parts.append('<section id="commands"><h2>Commands</h2><p>This report (run it again to refresh it), then the '
                 "commands that made the records:</p><pre>" + html.escape("\n".join(commands)) + "</pre></section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>poolstudy report: {html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
