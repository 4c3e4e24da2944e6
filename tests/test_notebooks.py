"""Every chapter notebook is committed executed, error-free, and installs the library in Colab.

`make book` runs this file before building, so a notebook that was not executed top
to bottom, or that stores an error, fails the build. nbval (`make notebooks`) then
re-executes each notebook and compares its outputs with these committed ones.
"""

import json
import pathlib

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
