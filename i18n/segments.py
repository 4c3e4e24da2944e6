"""Cut an English page into translatable segments, and put a page back together.

* A notebook (``.ipynb``): one segment per Markdown cell, keyed by the cell's id. Cell ids
  are stable across edits, so a changed cell is recognised as the same entry (fuzzy).
* A MyST page (``.md``): one segment per block between blank lines, keyed by its order of
  appearance among the page's translatable blocks. Fenced blocks (code, ``{eval-rst}``,
  ``{bibliography}``, ``{tableofcontents}``), ``$$`` math, labels ``(name)=`` and comments
  carry no prose and are copied as they are.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

# Fenced blocks whose content is code or configuration, never prose.
_VERBATIM_FENCE = re.compile(
    r"^(`{3,}|~{3,}|:{3,})\s*(\{(eval-rst|bibliography|tableofcontents|code-cell)\}|"
    r"[A-Za-z0-9_+-]*\s*$)"
)
_FENCE_OPEN = re.compile(r"^(`{3,}|~{3,}|:{3,})")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One translatable piece of a page: ``key`` identifies it (msgctxt), ``text`` is the English."""

    key: str
    text: str


@dataclasses.dataclass
class Page:
    """A page as a list of pieces: ``(text, key)``, where ``key`` is None for verbatim text."""

    path: pathlib.Path
    pieces: list[tuple[str, str | None]]
    notebook: dict | None = None  # the parsed notebook, for .ipynb pages

    @property
    def segments(self) -> list[Segment]:
        return [Segment(key, text) for text, key in self.pieces if key is not None]


def read_page(path: pathlib.Path) -> Page:
    """Parse an English ``.ipynb`` or ``.md`` page into pieces."""
    path = pathlib.Path(path)
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text(encoding="utf-8"))
        pieces = []
        for index, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            if "id" not in cell:
                raise ValueError(f"{path}: Markdown cell {index} has no id (nbformat >= 4.5)")
            text = "".join(cell["source"])
            if text.strip():
                pieces.append((text, cell["id"]))
        return Page(path, pieces, notebook)
    if path.suffix == ".md":
        return Page(path, _markdown_pieces(path.read_text(encoding="utf-8")))
    raise ValueError(f"{path}: expected a .ipynb or .md page, got {path.suffix!r}")


def _markdown_blocks(text: str) -> list[str]:
    """Split MyST text into blocks and the blank-line separators between them.

    Joining the result gives ``text`` back exactly. A fenced block stays one block even
    when it contains blank lines.
    """
    lines = text.splitlines(keepends=True)
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    in_math = False

    def flush():
        if current:
            blocks.append("".join(current))
            current.clear()

    for line in lines:
        stripped = line.strip()
        if fence is not None:
            current.append(line)
            if stripped.startswith(fence) and stripped.rstrip(fence[0]) == "":
                fence = None
            continue
        if in_math:
            current.append(line)
            if stripped.endswith("$$"):
                in_math = False
            continue
        if not stripped:
            flush()
            if blocks and blocks[-1].strip() == "":
                blocks[-1] += line
            else:
                blocks.append(line)
            continue
        opened = _FENCE_OPEN.match(stripped)
        if opened:
            fence = opened.group(1)
        elif stripped.startswith("$$") and not (len(stripped) > 2 and stripped.endswith("$$")):
            in_math = True
        current.append(line)
    flush()
    return blocks


def _is_verbatim(block: str) -> bool:
    stripped = block.strip()
    if not stripped:
        return True
    first = stripped.splitlines()[0]
    if _VERBATIM_FENCE.match(first):
        return True
    if stripped.startswith("$$") and stripped.endswith("$$"):
        return True
    if re.fullmatch(r"\([\w.:-]+\)=", stripped):
        return True
    return stripped.startswith("<!--") and stripped.endswith("-->")


def _markdown_pieces(text: str) -> list[tuple[str, str | None]]:
    pieces: list[tuple[str, str | None]] = []
    count = 0
    for block in _markdown_blocks(text):
        if _is_verbatim(block):
            pieces.append((block, None))
        else:
            count += 1
            # A block keeps its trailing newline outside the entry: translators see prose.
            body = block.rstrip("\n")
            pieces.append((body, f"block-{count}"))
            if len(block) > len(body):
                pieces.append((block[len(body) :], None))
    return pieces


def render_page(page: Page, translate) -> str:
    """The page's text with every segment replaced by ``translate(segment)``.

    For a notebook, only Markdown cell sources change: code cells, outputs and metadata are
    written back exactly as they were read, in nbformat's own JSON layout.
    """
    if page.notebook is None:
        return "".join(
            text if key is None else translate(Segment(key, text)) for text, key in page.pieces
        )
    notebook = json.loads(json.dumps(page.notebook))  # a deep copy
    by_key = {key: text for text, key in page.pieces}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown" and cell.get("id") in by_key:
            translated = translate(Segment(cell["id"], by_key[cell["id"]]))
            cell["source"] = translated.splitlines(keepends=True)
    return dump_notebook(notebook)


def dump_notebook(notebook: dict) -> str:
    """nbformat's on-disk JSON layout (one-space indent, sorted keys, UTF-8, final newline)."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
