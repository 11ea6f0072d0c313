"""Notebooks run top to bottom, offline."""

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient


@pytest.mark.slow  # a kernel, JAX and several compiles
@pytest.mark.parametrize("name", ["compose_transforms.ipynb"])
def test_notebook_runs_top_to_bottom(name, tmp_path):
  notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
  errors = [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
  images = [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
  assert images, "the notebook should draw its figure"
