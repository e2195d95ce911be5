"""Every command the README and docs/*.md show works as typed.

Each ``python train.py ...`` line (fenced or inline) composes as ``--cfg job`` composes it
(poolstudy.jobs.cmdline.compose_command; in a multirun every value of every swept key, each in one job) and
passes the config checks a job makes first; each
``python -m poolstudy...``, ``python -m benchmarks...`` or ``python -m tools...`` line has its arguments
accepted by the command's own parser (run in-process, stopped right after parsing). A code block after
``<!-- poolstudy.fails N -->`` holds commands meant to fail: each is run and must exit with N, without a
traceback. docs/bad_input.md is written and run by tests/e2e/test_bad_input.py.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, SHARED_DATA

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIPPED_PAGES = {ROOT / "docs" / "bad_input.md": "tests/e2e/test_bad_input.py runs each of its commands"}
STARTS = ("python train.py", "python -m poolstudy", "python -m benchmarks", "python -m tools")
FENCE = re.compile(r"^([ \t]*)(```|~~~)[^\n]*\n(.*?)^\1\2[ \t]*$", re.MULTILINE | re.DOTALL)
FAILS = re.compile(r"<!--\s*poolstudy\.fails\s+(\d+)\s*-->\s*$")
INLINE = re.compile(r"(?<!`)`(python [^`]+)`(?!`)")
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(\S+)\s*(?:#.*)?$")
#: What the placeholders of the pages stand for here: a committed record, and for the templates of "where to
#: change what" (``model=<name>``: the option a user adds) an option that exists.
PLACEHOLDERS = {"<job_dir>": "docs/studies/seed_replication/0", "model=<name>": "model=maxpool",
                "arch=<name>": "arch=lenet", "dataset=<name>": "dataset=shapes",
                "experiment=<name>": "experiment=seed_replication", "experiment=<study>": "experiment=seed_replication", "--metric <key>": "--metric test_acc"}
VARIABLES = {"PWD": str(ROOT), "w": "0"}


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    words: tuple[str, ...]
    fails: int | None = None

    @property
    def text(self) -> str:
        return shlex.join(self.words)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _words(command: str, variables: dict[str, str], where: str) -> list[str]:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    words = shlex.split(command, comments=True)
    for separator in ("&&", "||", ";", "|"):  # the python command is the first of a chain
        if separator in words:
            words = words[:words.index(separator)]
    if words and words[-1] == "&":
        words = words[:-1]
    expanded = []
    for word in words:
        def value(m: re.Match) -> str:
            name = m[1] or m[2]
            if name not in variables:
                raise AssertionError(f"{where}: ${name} is set nowhere on the page; set it in the code block "
                                     f"(NAME=value) or add it to VARIABLES in this test")
            return variables[name]
        expanded.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", value, word))
    return expanded


def page_commands(path: Path) -> list[Command]:
    text = path.read_text()
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    found: list[Command] = []
    fenced = []
    for m in FENCE.finditer(text):
        fenced.append((m.start(), m.end()))
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        fails = FAILS.search(before)
        variables = dict(VARIABLES)
        lines = m[3].replace("\\\n", " ").split("\n")
        base = _line(text, m.start(3))
        for i, raw in enumerate(lines):
            line = raw.strip()
            assignment = ASSIGNMENT.match(line)
            if assignment:
                variables[assignment[1]] = assignment[2]
            for loop in re.finditer(r"(?:^|;|\bdo)\s*(python [^;&|]*)", line):  # also inside `for ...; do python ...`
                if loop[1].startswith(STARTS):
                    where = f"{name}:{base + i}"
                    found.append(Command(name, base + i, tuple(_words(loop[1], variables, where)),
                                         int(fails[1]) if fails else None))
    for m in INLINE.finditer(text):
        if any(a <= m.start() < b for a, b in fenced) or not m[1].startswith(STARTS):
            continue
        where = f"{name}:{_line(text, m.start())}"
        found.append(Command(name, _line(text, m.start()), tuple(_words(m[1], dict(VARIABLES), where))))
    return found


def all_commands() -> list[Command]:
    seen, commands = set(), []
    for page in PAGES:
        if page in SKIPPED_PAGES:
            continue
        for command in page_commands(page):
            if (command.words, command.fails) not in seen:
                seen.add((command.words, command.fails))
                commands.append(command)
    return commands


COMMANDS = all_commands()


def _ids(commands: list[Command]) -> list[str]:
    return [f"{c.page}:{c.line}" for c in commands]


class Parsed(BaseException):
    """Raised by the patched parser once a command's arguments parsed: nothing after that runs."""


def parse_only(module: str, args: list[str], monkeypatch) -> argparse.Namespace:
    """Run ``python -m module args`` in this process up to its argument parsing."""
    depth = [0]  # parse_args calls parse_known_args: stop after the outermost call only
    for method in ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args"):
        real = getattr(argparse.ArgumentParser, method)

        def stop(self, *a, _real=real, **kw):
            depth[0] += 1
            try:
                result = _real(self, *a, **kw)
            finally:
                depth[0] -= 1
            if depth[0]:
                return result
            raise Parsed(result)
        monkeypatch.setattr(argparse.ArgumentParser, method, stop)
    monkeypatch.setattr(sys, "argv", [module, *args])
    monkeypatch.chdir(ROOT)
    with pytest.raises(Parsed) as parsed:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    return parsed.value.args[0]


def test_the_pages_show_the_commands_users_need():
    texts = {c.text for c in COMMANDS}
    assert "python train.py -m model=maxpool,strided dataset=mnist,cifar10" in texts  # the design card
    readme = {c.text for c in page_commands(ROOT / "README.md")}
    assert "python train.py" in readme and len([t for t in readme if t.startswith("python")]) >= 10
    assert any(c.fails == 2 for c in COMMANDS)  # the marker is read
    for page in PAGES:
        if page not in SKIPPED_PAGES and page.name not in ("index.md", "api.md"):
            assert page_commands(page), f"{page.name} shows no command"


TRAIN = [c for c in COMMANDS if c.words[:2] == ("python", "train.py") and c.fails is None]
MODULES = [c for c in COMMANDS if c.words[:2] == ("python", "-m") and c.fails is None]
FAILING = [c for c in COMMANDS if c.fails is not None]


@pytest.mark.parametrize("command", TRAIN, ids=_ids(TRAIN))
def test_train_command_composes(command, monkeypatch, tmp_path):
    from poolstudy.errors import PoolStudyError
    from poolstudy.jobs import cmdline
    from poolstudy.jobs.config_checks import check_config

    monkeypatch.setenv("POOLSTUDY_DATA", str(SHARED_DATA))
    monkeypatch.setenv("POOLSTUDY_CACHE", str(tmp_path))
    argv = ["train.py", *command.words[2:]]
    misplaced = cmdline.search_space_without_hpo(cmdline.current_forms(argv)[0], ROOT, "config")
    assert misplaced is None, f"{command.page}:{command.line}: {command.text}: {misplaced}"
    try:
        jobs = cmdline.compose_command(argv, ROOT, "config", every_job=False)
    except Exception as exc:  # Hydra's composition error, as train.py would print it
        pytest.fail(f"{command.page}:{command.line}: {command.text} does not compose: {exc}")
    assert jobs
    for overrides, cfg in jobs:
        try:
            check_config(cfg)
        except PoolStudyError as exc:
            pytest.fail(f"{command.page}:{command.line}: {command.text}: job {overrides}: {exc}")


@pytest.mark.parametrize("command", MODULES, ids=_ids(MODULES))
def test_module_command_parses(command, monkeypatch):
    module, args = command.words[2], list(command.words[3:])
    try:
        parse_only(module, args, monkeypatch)
    except SystemExit as exc:  # argparse refused the arguments (its message is on stderr)
        pytest.fail(f"{command.page}:{command.line}: {command.text} exits {exc.code} while parsing its arguments")


@pytest.mark.parametrize("command", FAILING, ids=_ids(FAILING))
def test_command_meant_to_fail_fails_cleanly(command):
    done = subprocess.run([sys.executable, *command.words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == command.fails, (command.text, done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_a_command_that_does_not_compose_is_caught(tmp_path, monkeypatch):
    """The checks above can fail: a page with a misspelt key, an unknown option and a bad flag."""
    page = tmp_path / "page.md"
    page.write_text("Run `python train.py trainer.epoch=3`.\n\n```bash\npython train.py model=maxpooll\n"
                    "python -m poolstudy.collect outputs --no-such-flag   # a comment\n```\n")
    commands = page_commands(page)
    assert [c.words for c in commands] == [("python", "train.py", "model=maxpooll"),
                                           ("python", "-m", "poolstudy.collect", "outputs", "--no-such-flag"),
                                           ("python", "train.py", "trainer.epoch=3")]
    from poolstudy.jobs import cmdline
    for command in (commands[0], commands[2]):
        with pytest.raises(Exception):
            cmdline.compose_command(["train.py", *command.words[2:]], ROOT, "config")
    # a bad value in the last job of a multirun is composed too
    with pytest.raises(Exception):
        cmdline.compose_command(["train.py", "-m", "model=maxpool,strided", "optimizer=adam,sgdd"], ROOT, "config",
                                every_job=False)
    assert cmdline.covering([["a=1", "b=1"], ["a=1", "b=2"], ["a=2", "b=1"], ["a=2", "b=2"]]) == [
        ["a=1", "b=1"], ["a=1", "b=2"], ["a=2", "b=1"]]
    with pytest.raises(SystemExit):
        parse_only("poolstudy.collect", ["outputs", "--no-such-flag"], monkeypatch)

