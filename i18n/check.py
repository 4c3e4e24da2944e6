"""Every problem of the Korean catalogs, as lines ``file:key: problem`` (what ``make test`` fails on)."""

from __future__ import annotations

import pathlib

import polib

from .catalog import LOCALE
from .markup import markup_problems
from .terms import term_problems


def entry_problems(entry: polib.POEntry) -> list[str]:
    """Untranslated, fuzzy, markup and terminology problems of one catalog entry."""
    if not entry.msgstr.strip():
        return ["untranslated"]
    problems = []
    if "fuzzy" in entry.flags:
        problems.append("fuzzy: the English changed since it was translated (see #| msgid)")
    problems += markup_problems(entry.msgid, entry.msgstr)
    problems += term_problems(entry.msgid, entry.msgstr, entry.tcomment or "")
    return problems


def catalog_problems(path: pathlib.Path) -> list[str]:
    catalog = polib.pofile(str(path), wrapwidth=0)
    lines = []
    for entry in catalog:
        if entry.obsolete:
            continue
        for problem in entry_problems(entry):
            lines.append(f"{pathlib.Path(path).name}:{entry.msgctxt}: {problem}")
    return lines


def all_problems(paths=None) -> list[str]:
    paths = sorted(LOCALE.glob("*.po")) if not paths else [pathlib.Path(p) for p in paths]
    return [line for path in paths for line in catalog_problems(path)]
