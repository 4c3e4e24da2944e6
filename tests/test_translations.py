"""The Korean edition (한국어판): complete, faithful, consistent, and never out of date.

The English notebooks and pages are the source; ``locale/ko/LC_MESSAGES/*.po`` hold the
Korean prose; ``ko/`` is generated from both (``make translations``, i.e. ``python -m
i18n update``). These tests fail when a catalog has an untranslated or fuzzy entry, when
a translation changes math, code, roles or directives, when it uses a term other than the
glossary's (``locale/ko/terms.csv``), when a catalog or a generated file lags behind the
English, or when a Korean notebook's code or outputs differ from the English one's.
"""

import json
import pathlib
import re

import polib
import pytest

from i18n import catalog, check, generate, glossary, markup, segments, terms

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = catalog.translated_pages()
CATALOGS = [catalog.catalog_path(page) for page in PAGES]
KOREAN_NOTEBOOKS = [page for page in PAGES if page.suffix == ".ipynb"]
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def live_entries(path):
    return [e for e in polib.pofile(str(path), wrapwidth=0) if not e.obsolete]


# --- The committed edition ---------------------------------------------------------


def test_every_toc_page_has_a_catalog_and_a_korean_page():
    assert {p.stem for p in PAGES} >= {"intro", "api", "bibliography"}
    assert len(KOREAN_NOTEBOOKS) == len(list((ROOT / "chapters").glob("*.ipynb")))
    for page, po in zip(PAGES, CATALOGS, strict=True):
        assert po.exists(), f"{page}: no catalog {po.relative_to(ROOT)} (run make translations)"
        assert (ROOT / "ko" / page).exists(), f"{page}: no ko/{page} (run make translations)"
    assert (ROOT / "ko" / "glossary.md").exists()


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.name)
def test_catalog_is_complete_faithful_and_uses_the_glossary_terms(path):
    problems = check.catalog_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_catalog_matches_the_current_english(page):
    """Every English segment has its entry, with the current English as msgid."""
    current = catalog.updated(
        segments.read_page(ROOT / page), catalog.load(catalog.catalog_path(page))
    )
    committed = catalog.catalog_path(page).read_text(encoding="utf-8")
    assert catalog.catalog_text(current) == committed, (
        f"{catalog.catalog_path(page).name} lags behind {page}: run make translations, "
        "then translate the new and fuzzy entries"
    )


def test_generated_files_are_up_to_date():
    files, missing = generate.expected_files()
    assert not missing, "\n".join(missing)
    stale = [
        str(path.relative_to(ROOT))
        for path, text in files.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"out of date (run make translations): {stale}"
    for name in ("imgs", "_static"):
        link = ROOT / "ko" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), f"ko/{name}"


@pytest.mark.parametrize("page", KOREAN_NOTEBOOKS, ids=lambda p: p.name)
def test_korean_notebook_has_the_english_code_and_outputs_byte_for_byte(page):
    english = json.loads((ROOT / page).read_text(encoding="utf-8"))
    korean = json.loads((ROOT / "ko" / page).read_text(encoding="utf-8"))
    assert korean["metadata"] == english["metadata"]
    assert [c["id"] for c in korean["cells"]] == [c["id"] for c in english["cells"]]
    for en_cell, ko_cell in zip(english["cells"], korean["cells"], strict=True):
        assert en_cell["cell_type"] == ko_cell["cell_type"]
        if en_cell["cell_type"] == "code":
            assert json.dumps(ko_cell, sort_keys=True) == json.dumps(en_cell, sort_keys=True), (
                f"ko/{page}: code cell {en_cell['id']} differs from the English"
            )
        else:
            assert ko_cell["metadata"] == en_cell["metadata"]


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.name)
def test_prose_is_translated_into_korean_in_one_register(path):
    """Entries with English prose get Hangul; the edition speaks 합니다체, never 해요체."""
    for entry in live_entries(path):
        words = re.findall(r"[A-Za-z]{3,}", terms.prose(entry.msgid))
        if len(words) >= 3:
            assert HANGUL.search(entry.msgstr), f"{path.name}:{entry.msgctxt} is not in Korean"
        # 합니다체 asks with 까요? and instructs with 세요. ; 해요체 states with 요.
        endings = re.findall(r"[\uac00-\ud7a3](?<![까세])요[.!]", terms.prose(entry.msgstr))
        assert not endings, f"{path.name}:{entry.msgctxt}: 해요체 ending {endings} (use 합니다체)"


def test_no_forbidden_variant_anywhere_in_the_korean_edition():
    # The glossary quotes the notes' own wording (which may use a variant), so its Korean
    # columns are checked in test_terms_are_consistent instead.
    texts = {
        p: p.read_text(encoding="utf-8")
        for p in (ROOT / "ko").rglob("*.md")
        if p.name != "glossary.md"
    }
    for page in KOREAN_NOTEBOOKS:
        notebook = json.loads((ROOT / "ko" / page).read_text(encoding="utf-8"))
        texts[page] = "".join(
            "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"
        )
    for path, text in texts.items():
        for term in terms.load_terms():
            for variant in term.forbidden:
                assert variant not in terms.prose(text), (
                    f"{path}: {variant!r} (use {term.korean!r})"
                )


def test_glossary_of_both_editions_has_a_row_per_term():
    english, korean = glossary.render("en"), glossary.render("ko")
    for term in terms.load_terms():
        assert f"| {term.english.replace('|', chr(92) + '|')} | {term.korean} |" in english
        assert f"| {term.korean} | {term.english.replace('|', chr(92) + '|')} |" in korean


def test_terms_are_consistent():
    listed = terms.load_terms()
    assert len({t.english.lower() for t in listed}) == len(listed), (
        "an English term is listed twice"
    )
    forbidden = {v: t.english for t in listed for v in t.forbidden}
    for term in listed:
        clashes = [v for v in forbidden if v in term.korean or v in terms.prose(term.meaning_ko)]
        assert not clashes, (
            f"{term.english}: its Korean {term.korean!r} contains forbidden {clashes}"
        )


# --- The machinery, on small examples ------------------------------------------------


def test_markdown_page_round_trips_and_skips_code(tmp_path):
    text = "# Title\n\nSome *prose*.\n\n```python\nx = 1\n\ny = 2\n```\n\n(a-label)=\n## Next\n"
    page_path = tmp_path / "page.md"
    page_path.write_text(text, encoding="utf-8")
    page = segments.read_page(page_path)
    assert [s.text for s in page.segments] == ["# Title", "Some *prose*.", "(a-label)=\n## Next"]
    assert segments.render_page(page, lambda s: s.text) == text
    assert segments.render_page(page, lambda s: s.text.upper()).startswith("# TITLE\n\nSOME")


def test_changed_english_makes_the_entry_fuzzy_with_the_previous_english(tmp_path):
    page_path = tmp_path / "page.md"
    page_path.write_text("First paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    po = catalog.updated(segments.read_page(page_path), catalog.load(tmp_path / "none.po"))
    assert [e.msgstr for e in po] == ["", ""]
    po[0].msgstr, po[1].msgstr = "첫 문단입니다.", "둘째 문단입니다."
    page_path.write_text("First paragraph.\n\nSecond paragraph, changed.\n", encoding="utf-8")
    po = catalog.updated(segments.read_page(page_path), po)
    assert "fuzzy" not in po[0].flags and po[0].msgstr == "첫 문단입니다."
    assert "fuzzy" in po[1].flags and po[1].previous_msgid == "Second paragraph."
    assert check.entry_problems(po[1])[0].startswith("fuzzy")
    with pytest.raises(LookupError, match="fuzzy"):
        catalog.translation_of(po)(segments.Segment("block-2", "Second paragraph, changed."))


def test_markup_check_catches_changed_math_code_roles_and_directives():
    english = (
        "The scores $QK^\\top$ use `mask` {cite:p}`vaswani2017attention`; see "
        "{doc}`Chapter 2 <02_multi_head_attention>`.\n\n```{solution-start} ch1-ex\n"
        ":class: dropdown\n```\n"
    )
    good = (
        "점수 $QK^\\top$는 `mask`를 씁니다 {cite:p}`vaswani2017attention`. "
        "{doc}`2장 <02_multi_head_attention>`을 보세요.\n\n```{solution-start} ch1-ex\n"
        ":class: dropdown\n```\n"
    )
    assert markup.markup_problems(english, good) == []
    for broken in (
        good.replace("$QK^\\top$", "$QK^T$"),
        good.replace("`mask`", "mask"),
        good.replace("vaswani2017attention", "vaswani2017"),
        good.replace("<02_multi_head_attention>", "<03_positional_encoding>"),
        good.replace(":class: dropdown", ""),
        good.replace("ch1-ex", "ch1-exercise"),
    ):
        assert markup.markup_problems(english, broken), broken


def test_term_check_requires_the_listed_term_and_refuses_forbidden_variants():
    english = "Self-attention lets every token attend to every other token."
    assert terms.term_problems(english, "셀프 어텐션은 모든 토큰이 서로를 보게 합니다.") == []
    problems = terms.term_problems(english, "자기 주의는 모든 토큰이 서로를 보게 합니다.")
    assert any("forbidden" in p for p in problems)
    assert any("without '셀프 어텐션'" in p for p in problems)
    # A term inside code or math is not prose, and a translator comment can excuse a term.
    assert terms.term_problems("Call `attention(x)`.", "`attention(x)`를 호출합니다.") == []
    assert (
        terms.term_problems(
            "The sentence-transformers package.", "sentence-transformers 패키지입니다."
        )
        == []
    )
