"""Every chapter notebook is committed executed, error-free, and installs the library in Colab.

`make book` runs this file before building, so a notebook that was not executed top
to bottom, or that stores an error, fails the build. nbval (`make notebooks`) then
re-executes each notebook and compares its outputs with these committed ones.
"""

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
TOC = (ROOT / "_toc.yml").read_text(encoding="utf-8")


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"]


def code_cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom(path):
    counts = [c["execution_count"] for c in code_cells(path)]
    assert None not in counts, f"{path.name}: a code cell was never executed"
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..n: "
        "re-execute the notebook top to bottom in a fresh kernel (make execute)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_outputs(path):
    for i, cell in enumerate(code_cells(path)):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{path.name}: code cell {i} stores an error"
            assert output.get("name") != "stderr" or "Warning" not in "".join(output["text"]), (
                f"{path.name}: code cell {i} stores a warning"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_from_repository_url_in_colab_only(path):
    first = code_cells(path)[0]
    source = "".join(first["source"])
    assert "google.colab" in source, f"{path.name}: the first code cell must be the Colab setup"
    assert f"git+{repository_url()}" in source, (
        f"{path.name}: the setup cell must install from the URL in _config.yml ({repository_url()})"
    )
    assert "remove-cell" in first["metadata"].get("tags", []), (
        f"{path.name}: the setup cell must be tagged remove-cell (hidden on the site)"
    )
    assert not first["outputs"], f"{path.name}: outside Colab the setup cell must print nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_table_of_contents(path):
    assert f"chapters/{path.stem}" in TOC, f"{path.name} is not listed in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_memory_addresses_in_outputs(path):
    for i, cell in enumerate(code_cells(path)):
        text = json.dumps(cell.get("outputs", []))
        assert " at 0x" not in text, f"{path.name}: code cell {i} prints a memory address"


# --- The README's rule: nbval compares only what is the same on every machine. ---------
# A float printed through an f-string or format() with a float presentation type (f, e,
# g, %) shows its last digits, which depend on the CPU, the BLAS and the thread count.
# Such a value must go through transformer_lib.measured.measured() (masked by
# sanitize.cfg), or the line must carry a marker comment "# exact: <why>" naming why the
# value is the same everywhere (exact small-integer arithmetic, a value rounded far
# coarser than its stated error bound, a constant).
FLOAT_FORMAT = re.compile(
    r"\{[^{}]*?:(?:.?[<>=^])?[+\- ]?z?#?0?\d*[,_]?(?:\.\d+)?[eEfFgG%]\}"
    r"|format\([^()]*,\s*['\"][^'\"]*[eEfFgG%]['\"]\)"
)
EXACT_MARKER = re.compile(r"#\s*exact:\s*\S")
IGNORED_OUTPUT = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP")


def unmarked_float_formats(source: str) -> list[str]:
    """Lines of a code cell that format a float without ``measured`` or an ``# exact:`` marker."""
    if any(marker in source for marker in IGNORED_OUTPUT):
        return []
    return [
        line.strip()
        for line in source.splitlines()
        if FLOAT_FORMAT.search(line) and not EXACT_MARKER.search(line)
    ]


def test_float_format_lint_catches_plain_fstrings():
    assert unmarked_float_formats('print(f"accuracy {acc:.2f}")') == [
        'print(f"accuracy {acc:.2f}")'
    ]
    assert unmarked_float_formats('print(f"max diff {d:.1e}")')
    assert unmarked_float_formats("print(format(x, '.3g'))")
    assert not unmarked_float_formats('print(f"accuracy {measured(acc)}")')
    assert not unmarked_float_formats('print(f"{x:.1f}")  # exact: a multiple of 0.5')
    assert not unmarked_float_formats('print(f"{n:d} tokens, {name!r}")')
    assert not unmarked_float_formats('f(**{"return_weights": True})')
    assert unmarked_float_formats('print(f"{x:>8.3f} {y:+.1%}")')
    assert not unmarked_float_formats('# NBVAL_IGNORE_OUTPUT\nprint(f"{t:.2f} ms")')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_machine_dependent_floats_are_printed_with_measured(path):
    offenders = {
        i: lines
        for i, cell in enumerate(code_cells(path))
        if (lines := unmarked_float_formats("".join(cell["source"])))
    }
    assert not offenders, (
        f"{path.name}: these code cells print floats that nbval would compare digit by "
        "digit. Print a machine-dependent number with measured(x) and assert the claim "
        "with a tolerance, or add '# exact: <why>' to the line if the value is the same "
        f"on every machine (README, 'Writing a chapter'): {offenders}"
    )


# --- Markdown that CommonMark would turn into a code block ------------------------------
# A Markdown line indented by four spaces (outside a fenced block or a list) is an
# indented code block: a heading or LaTeX in it is shown raw and vanishes from the page
# contents (this happened to Chapter 4's "## 4.5").
FENCE = re.compile(r"^\s{0,3}(```+|~~~+|:::+)")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")


def indented_code_blocks(markdown: str) -> list[str]:
    """Indented-code-block lines of ``markdown`` that hold a heading or ``$`` math."""
    offenders, fence, previous_blank, in_list = [], None, True, False
    for line in markdown.splitlines():
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        if not line.strip():
            previous_blank = True
            continue
        if LIST_ITEM.match(line):
            in_list = True
        elif not line.startswith(" "):
            in_list = False
        indented = line.startswith("    ") or line.startswith("\t")
        if indented and previous_blank and not in_list:
            if "$" in line or line.strip().startswith("#"):
                offenders.append(line)
        previous_blank = False
    return offenders


def test_indented_code_block_check_catches_the_chapter_4_bug():
    assert indented_code_blocks("Text.\n\n    ## 4.5 Stacking $N$ layers\n")
    assert indented_code_blocks("    With $x^2$ here.")
    assert not indented_code_blocks("## 4.5 Stacking $N$ layers\n\nText $x$.")
    assert not indented_code_blocks("- item\n\n    continued $x$ in the item\n")
    assert not indented_code_blocks("```python\n    # a comment in code\n```")
    assert not indented_code_blocks("    plain indented code, no math\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_markdown_cell_renders_math_or_headings_as_code(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    offenders = {
        i: lines
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "markdown"
        and (lines := indented_code_blocks("".join(cell["source"])))
    }
    assert not offenders, (
        f"{path.name}: Markdown cells indented by four spaces render as code blocks "
        f"(raw LaTeX, lost headings): {offenders}"
    )
