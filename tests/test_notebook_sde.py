"""notebooks/sde.ipynb runs top to bottom, offline, and draws its figures."""

import base64

import nbclient
import nbformat
import pytest
from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "sde.ipynb"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # a kernel and thousands of SDE paths
def test_sde_notebook_runs_and_draws_its_figures(tmp_path, monkeypatch):
  monkeypatch.setenv("OPTLAB_FIGURE_DIR", str(tmp_path))  # the kernel inherits it
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, kernel_name="python3", timeout=300,
                          resources={"metadata": {"path": str(ROOT)}}).execute()
  for name in ("sde_adam_quadratic.png", "sde_signsgd_student_t.png"):
    figure = tmp_path / name
    assert figure.read_bytes()[:8] == PNG_SIGNATURE and figure.stat().st_size > 10_000, name
  shown = [base64.b64decode(output["data"]["image/png"])
           for cell in notebook.cells if cell.cell_type == "code"
           for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
  assert len(shown) == 2 and all(png[:8] == PNG_SIGNATURE for png in shown)
  printed = "".join(output.get("text", "") for cell in notebook.cells
                    if cell.cell_type == "code" for output in cell.get("outputs", []))
  assert "Adam SDE" in printed and "Malladi Adam SDE" in printed and "SignSGD floor" in printed
