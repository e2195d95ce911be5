"""Command lines that error messages suggest: the user's own command, corrected, ready to paste."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from typing import Any

_SAFE = re.compile(r"[\w@%+=:,./-]+")      # needs no quoting in a POSIX shell (no braces, quotes, parentheses)
_UNSAFE_IN_DOUBLE_QUOTES = re.compile(r'["$`\\!]')


def shell_arg(arg: str) -> str:
    """``arg`` quoted for a POSIX shell, in double quotes where that suffices (easier to read)."""
    if _SAFE.fullmatch(arg):
        return arg
    if not _UNSAFE_IN_DOUBLE_QUOTES.search(arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def params_override(entries: Mapping[str, Any]) -> str:
    """The override that sets (or, with None, removes) entries of ``hydra.sweeper.params``.

    Hydra addresses ``a.b`` as nested keys, so one search dimension with a dotted name can only be
    set through the dictionary form; ``++`` adds a key or replaces it, and merges into the rest.
    """
    def value(v: Any) -> str:
        return "null" if v is None else "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return "++hydra.sweeper.params={" + ",".join(f"{k}:{value(v)}" for k, v in entries.items()) + "}"


def command_with(replace: Mapping[str, str] | None = None, remove: Iterable[str] = (),
                 add: Iterable[str] = (), argv: list[str] | None = None) -> str:
    """This process's command line (``python <script> args``) with arguments replaced, removed or added."""
    argv = list(sys.argv if argv is None else argv)
    replace, remove = dict(replace or {}), set(remove)
    args = [replace.get(a, a) for a in argv[1:] if a not in remove]
    return " ".join(["python", shell_arg(argv[0]), *map(shell_arg, [*args, *add])])
