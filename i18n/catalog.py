"""gettext catalogs of the Korean edition: ``locale/ko/LC_MESSAGES/<page>.po``, via polib.

One entry per segment (``segments``): ``msgctxt`` is the segment's key (a notebook cell id,
or ``block-N`` on a MyST page), ``msgid`` the English, ``msgstr`` the Korean. Updating a
catalog from its English page keeps the catalog a faithful mirror of the page:

* an entry whose English is unchanged keeps its translation;
* an entry whose English changed keeps its old translation, is flagged ``fuzzy`` and
  remembers the old English as ``previous_msgid`` (``#| msgid``), as GNU msgmerge does,
  so a translator sees exactly what changed (Poedit and Weblate show the difference);
* a new segment gets an empty translation (or, if its exact English was translated under
  another key, that translation);
* entries whose segment disappeared become obsolete (``#~``), kept for reference.
"""

from __future__ import annotations

import pathlib

import polib
import yaml

from .segments import Page, read_page

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCALE = ROOT / "locale" / "ko" / "LC_MESSAGES"
GENERATED_PAGES = {"glossary"}  # written from locale/ko/terms.csv by i18n.terms, in both editions

HEADER = {
    "Project-Id-Version": "Self-Attention from Scratch",
    "Language": "ko",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=UTF-8",
    "Content-Transfer-Encoding": "8bit",
    "Plural-Forms": "nplurals=1; plural=0;",
}


def toc_pages(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Every English source page of the book's toc, as a path relative to ``root``."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]
    for part in toc.get("parts", []):
        names += [chapter["file"] for chapter in part.get("chapters", [])]
    pages = []
    for name in names:
        found = [root / f"{name}{suffix}" for suffix in (".ipynb", ".md")]
        found = [path for path in found if path.exists()]
        if not found:
            raise FileNotFoundError(f"_toc.yml names {name!r}, but no {name}.ipynb or .md exists")
        pages.append(found[0].relative_to(root))
    return pages


def translated_pages(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The toc pages whose prose lives in a catalog (all but the generated glossary)."""
    return [page for page in toc_pages(root) if page.with_suffix("").name not in GENERATED_PAGES]


def catalog_path(page: pathlib.Path) -> pathlib.Path:
    """``chapters/01_self_attention.ipynb`` → ``locale/ko/LC_MESSAGES/01_self_attention.po``."""
    return LOCALE / f"{pathlib.Path(page).stem}.po"


def load(path: pathlib.Path) -> polib.POFile:
    """A catalog, or an empty one with the project's header if the file does not exist yet."""
    if pathlib.Path(path).exists():
        return polib.pofile(str(path), wrapwidth=0)
    catalog = polib.POFile(wrapwidth=0)
    catalog.metadata = dict(HEADER)
    return catalog


def updated(page: Page, old: polib.POFile) -> polib.POFile:
    """The catalog for ``page``, carrying translations over from ``old`` (see module doc)."""
    new = polib.POFile(wrapwidth=0)
    new.metadata = dict(old.metadata) or dict(HEADER)
    new.header = old.header
    live = [entry for entry in old if not entry.obsolete]
    by_key = {entry.msgctxt: entry for entry in live}
    by_text = {entry.msgid: entry for entry in old if entry.msgstr and "fuzzy" not in entry.flags}
    used = set()
    source = page.path.as_posix()
    if page.path.is_absolute() and page.path.is_relative_to(ROOT):
        source = page.path.relative_to(ROOT).as_posix()
    for segment in page.segments:
        entry = polib.POEntry(
            msgctxt=segment.key, msgid=segment.text, occurrences=[(source, segment.key)]
        )
        previous = by_key.get(segment.key)
        if previous is not None and previous.msgid == segment.text:
            entry.msgstr = previous.msgstr
            entry.flags = list(previous.flags)
            entry.previous_msgid = previous.previous_msgid
            entry.tcomment = previous.tcomment
            used.add(segment.key)
        elif segment.text in by_text:
            entry.msgstr = by_text[segment.text].msgstr
            used.add(by_text[segment.text].msgctxt)
        elif previous is not None and previous.msgstr:
            entry.msgstr = previous.msgstr
            entry.flags = ["fuzzy"]
            # Keep the English the translation was made from, through repeated changes.
            entry.previous_msgid = previous.previous_msgid or previous.msgid
            entry.tcomment = previous.tcomment
            used.add(segment.key)
        new.append(entry)
    for entry in old:
        if entry.msgstr and (entry.obsolete or entry.msgctxt not in used):
            if any(e.msgid == entry.msgid and e.msgstr == entry.msgstr for e in new):
                continue
            entry.obsolete = True
            new.append(entry)
    return new


def catalog_text(catalog: polib.POFile) -> str:
    """A catalog as ``make translations`` writes it (what the tests compare against)."""
    return str(catalog) + "\n"


def write_if_changed(path: pathlib.Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; whether it wrote."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def update_all(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Update every page's catalog from its English source; the catalogs that changed."""
    changed = []
    for page_path in translated_pages(root):
        path = catalog_path(page_path)
        new = updated(read_page(root / page_path), load(path))
        if write_if_changed(path, catalog_text(new)):
            changed.append(path)
    return changed


def translation_of(catalog: polib.POFile):
    """A function segment → Korean text, refusing untranslated or fuzzy entries."""
    entries = {(e.msgctxt, e.msgid): e for e in catalog if not e.obsolete}

    def translate(segment):
        entry = entries.get((segment.key, segment.text))
        if entry is None or not entry.msgstr:
            raise LookupError(f"untranslated: {segment.key}: {segment.text[:60]!r}")
        if "fuzzy" in entry.flags:
            raise LookupError(f"fuzzy (English changed): {segment.key}: {segment.text[:60]!r}")
        return entry.msgstr

    return translate
