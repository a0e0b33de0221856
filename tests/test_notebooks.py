"""The analysis notebooks in docs/notebooks execute offline, start to finish."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_executes(notebook, tmp_path):
    # run a copy beside a link to tests/data, so relative paths work and the clone stays clean
    folder = tmp_path / "docs" / "notebooks"
    folder.mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    copy = folder / notebook.name
    shutil.copy(notebook, copy)
    book = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()
    errors = [output for cell in book.cells for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors
    images = [output for cell in book.cells for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert images, "every notebook draws at least one figure"


def test_api_reference_is_current_and_complete():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    text = make_api.render()
    assert "(no docstring)" not in text
    for name in ("def synthesize", "def run", "def fetch", "class StreamOptions", "class RunRecipe"):
        assert f"### `{name}" in text
    assert text == (ROOT / "docs" / "api.md").read_text(), "docs/api.md is out of date: run python docs/make_api.py"


def test_docs_figure_is_drawn_offline_from_shipped_data(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_figures.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    drawn = tmp_path / "complexity-and-depth.png"
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and drawn.stat().st_size > 50_000
    assert (ROOT / "docs" / "images" / "complexity-and-depth.png").exists(), "run python docs/make_figures.py"
