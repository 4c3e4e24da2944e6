"""The book's terminology (``locale/ko/terms.csv``): checks on every translation, and the glossary.

Each row gives an English term, the one Korean term this edition uses for it, a regular
expression (``match``, case-insensitive) that finds the English term in prose, and the
variants the Korean must never use (``forbidden``, ``|``-separated). Where an entry's
English prose matches a term, its Korean must contain the Korean term. A translator who
has a reason to deviate writes a translator comment on the entry, ``# terms-ok: <english>:
<why>``, and the term is not required there (forbidden variants stay forbidden).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import pathlib
import re

from .markup import (
    _CODE,
    _DISPLAY_MATH,
    _FENCE,
    _INLINE_MATH,
    _LABEL_ARGUMENT_DIRECTIVES,
    _LINK_TARGET,
    _OPTION,
    _ROLE,
    directive,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TERMS = ROOT / "locale" / "ko" / "terms.csv"
COLUMNS = [
    "english",
    "korean",
    "match",
    "forbidden",
    "notes",
    "meaning_en",
    "meaning_ko",
    "chapters",
]


@dataclasses.dataclass(frozen=True)
class Term:
    english: str
    korean: str
    match: str  # regex finding the English term in prose; empty: the glossary only
    forbidden: tuple[str, ...]
    notes: str  # how the study notes write it
    meaning_en: str
    meaning_ko: str
    chapters: tuple[int, ...]


@functools.cache
def load_terms(path: pathlib.Path = TERMS) -> tuple[Term, ...]:
    """Read and validate the term list; a malformed row raises ``ValueError`` naming it."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{path}: columns must be {COLUMNS}, got {reader.fieldnames}")
        terms = []
        for line, row in enumerate(reader, start=2):
            if not row["english"] or not row["korean"]:
                raise ValueError(f"{path}:{line}: english and korean are required")
            if row["match"]:
                try:
                    re.compile(row["match"])
                except re.error as error:
                    raise ValueError(f"{path}:{line}: bad match regex: {error}") from None
            forbidden = tuple(v.strip() for v in row["forbidden"].split("|") if v.strip())
            if row["korean"] in forbidden:
                raise ValueError(f"{path}:{line}: {row['korean']!r} is also forbidden")
            try:
                chapters = tuple(int(c) for c in row["chapters"].split())
            except ValueError:
                raise ValueError(
                    f"{path}:{line}: chapters must be numbers: {row['chapters']!r}"
                ) from None
            terms.append(
                Term(
                    row["english"],
                    row["korean"],
                    row["match"],
                    forbidden,
                    row["notes"],
                    row["meaning_en"],
                    row["meaning_ko"],
                    chapters,
                )
            )
    return tuple(terms)


def prose(text: str) -> str:
    """``text`` without code, math, roles and link targets: where terms are looked for.

    A directive's title and body are prose (an exercise, a note); a code block is not.
    """

    def fence(match: re.Match) -> str:
        parsed = directive(match.group("info"))
        if parsed is None:  # a code block
            return " "
        name, argument = parsed
        title = "" if name in _LABEL_ARGUMENT_DIRECTIVES else argument
        return f"\n{title}\n{_OPTION.sub('', match.group('body'))}\n"

    text = _FENCE.sub(fence, text)
    for pattern in (_DISPLAY_MATH, _INLINE_MATH, _ROLE, _CODE, _LINK_TARGET):
        text = pattern.sub(" ", text)
    return text


def _excused(comment: str) -> set[str]:
    return {
        m.group(1).strip().lower() for m in re.finditer(r"terms-ok:\s*([^:\n]+):", comment or "")
    }


def term_problems(english: str, korean: str, comment: str = "", terms=None) -> list[str]:
    """Terminology problems of one translation, one line each (empty when consistent)."""
    terms = load_terms() if terms is None else terms
    english_prose, korean_prose = prose(english), prose(korean)
    excused = _excused(comment)
    problems = []
    for term in terms:
        for variant in term.forbidden:
            if variant in korean_prose:
                problems.append(f"forbidden variant {variant!r} (use {term.korean!r})")
        if (
            term.match
            and term.english.lower() not in excused
            and re.search(term.match, english_prose, re.I)
            and term.korean not in korean_prose
        ):
            problems.append(f"{term.english!r} is translated without {term.korean!r}")
    return problems
