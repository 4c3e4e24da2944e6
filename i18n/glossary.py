"""The glossary page of both editions, written from ``locale/ko/terms.csv``.

``glossary.md`` (English) and ``ko/glossary.md`` (Korean) are generated: the term list is
the one source of the book's terminology, for readers and for the translation checks.
"""

from __future__ import annotations

from .catalog import toc_pages
from .terms import Term, load_terms

_HEADER = {
    "en": """\
# Glossary: 한국어 ↔ English

Every term of the book, with the one Korean term the Korean edition uses for it, how the
study notes write it, and where the book treats it. The notes write many terms in English
inside Korean sentences; both forms are given, as Korean readers meet both. This page is
generated from `locale/ko/terms.csv`, which also checks every Korean translation: where
the English uses a term, the Korean uses its term here, and never a variant the list
forbids.

| English | 한국어 | the study notes | meaning | where |
|---|---|---|---|---|
""",
    "ko": """\
# 용어집: 한국어 ↔ English

이 책의 모든 용어를 한국어판이 쓰는 한국어 용어 하나, 학습 노트의 표기, 그리고 그 용어를
다루는 장과 함께 정리했습니다. 노트는 한국어 문장 안에 영어 용어를 그대로 쓰는 일이 많아서,
한국어 독자가 실제로 만나는 두 형태를 모두 적었습니다. 이 페이지는 `locale/ko/terms.csv`에서
생성되며, 같은 목록이 모든 한국어 번역을 검사합니다. 영어 원문이 어떤 용어를 쓰면 한국어
번역은 여기 적힌 용어를 쓰고, 목록이 금지한 다른 표현은 쓰지 않습니다.

| 한국어 | English | 학습 노트 | 뜻 | 장 |
|---|---|---|---|---|
""",
}


def _chapter_docs() -> dict[int, str]:
    """Chapter number → docname, from the toc (``chapters/01_…`` is Chapter 1)."""
    docs = {}
    for page in toc_pages():
        stem = page.with_suffix("").as_posix()
        number = page.name.split("_", 1)[0]
        if page.parts[0] == "chapters" and number.isdigit():
            docs[int(number)] = stem
    return docs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _where(term: Term, language: str, docs: dict[int, str]) -> str:
    links = []
    for number in term.chapters:
        if number not in docs:
            raise ValueError(f"terms.csv: {term.english!r} names chapter {number}, not in the toc")
        text = f"Chapter {number}" if language == "en" else f"{number}장"
        links.append(f"{{doc}}`{text} <{docs[number]}>`")
    return ", ".join(links)


def render(language: str) -> str:
    """The glossary page in ``language`` ("en" or "ko")."""
    docs = _chapter_docs()
    rows = []
    for term in load_terms():
        where = _where(term, language, docs)
        if language == "en":
            cells = [term.english, term.korean, term.notes, term.meaning_en, where]
        else:
            cells = [term.korean, term.english, term.notes, term.meaning_ko, where]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |\n")
    return _HEADER[language] + "".join(rows)
