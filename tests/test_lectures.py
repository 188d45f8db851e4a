"""Every lecture is paired with its notebook, output-free, and runs top to bottom.

A lecture is ``lectures/NN_name.py`` (jupytext percent format, the source of truth)
plus ``lectures/NN_name.ipynb`` generated from it and committed without outputs.
New lectures are picked up by the glob below; they run with ``MT_FAST=1`` (small
sizes) and ``MPLBACKEND=Agg`` (no windows).

Which Python runs the notebook: nbclient starts a kernel from a kernelspec, and the
``python3`` spec that Jupyter finds first may belong to another Python (one on
``JUPYTER_PATH``, in the user's data folder or installed system-wide). So the tests
write their own kernelspec into a temporary folder, pointing at
``sys.executable -m ipykernel_launcher``: the kernel is always the interpreter running
pytest, which is where the package is installed (``pip install -e '.[test]'`` brings
ipykernel, nbclient and jupytext).

That the ``.py`` also runs as a plain script follows from the cells being the same
plus a static check for IPython-only code (see the last test).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

LECTURES = Path(__file__).resolve().parents[1] / "lectures"
LECTURE_FILES = sorted(LECTURES.glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT = 300  # seconds, per notebook cell
KERNEL_NAME = "minitransformer-lectures"
IPYTHON_BUILTINS = {"display", "get_ipython"}

pytestmark = pytest.mark.lecture

by_lecture = pytest.mark.parametrize("lecture", LECTURE_FILES, ids=[p.stem for p in LECTURE_FILES])


def lecture_env() -> dict[str, str]:
    return {**os.environ, "MT_FAST": "1", "MPLBACKEND": "Agg"}


def files_outside_outputs() -> set[Path]:
    """Everything under lectures/ except outputs/ (where lectures may write) and caches."""
    ignored = {"outputs", ".ipynb_checkpoints", "__pycache__"}
    return {
        p for p in LECTURES.rglob("*") if not ignored.intersection(p.relative_to(LECTURES).parts)
    }


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of kernelspecs holding one spec that runs this very interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "minitransformer lectures (test)",
                "language": "python",
            }
        )
    )
    return root


def test_lectures_exist() -> None:
    assert LECTURE_FILES, f"no lectures/NN_name.py found in {LECTURES}"


@by_lecture
def test_notebook_is_paired_and_has_no_outputs(lecture: Path) -> None:
    """The .ipynb has the .py's cells, same types and sources in the same order, no outputs."""
    notebook = lecture.with_suffix(".ipynb")
    regenerate = f"regenerate it with: jupytext --to ipynb {lecture.relative_to(LECTURES.parent)}"
    assert notebook.exists(), f"{notebook.name} is missing; {regenerate}"

    from_py = jupytext.read(lecture)
    from_ipynb = jupytext.read(notebook)
    py_cells = [(c.cell_type, c.source) for c in from_py.cells]
    nb_cells = [(c.cell_type, c.source) for c in from_ipynb.cells]
    if py_cells != nb_cells:
        if len(py_cells) != len(nb_cells):
            where = f"{len(py_cells)} cells in the .py, {len(nb_cells)} in the .ipynb"
        else:
            where = _first_difference(py_cells, nb_cells)
        pytest.fail(f"{notebook.name} is out of sync with {lecture.name} ({where}); {regenerate}")

    raw = nbformat.read(notebook, as_version=4)
    for i, cell in enumerate(raw.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{notebook.name} cell {i} has outputs; commit it without them ({regenerate})"
            )


def _first_difference(py_cells: list[tuple], nb_cells: list[tuple]) -> str:
    """'cell i, line j: <.py line> vs <.ipynb line>' for two equally long cell lists."""
    i = next(i for i, (a, b) in enumerate(zip(py_cells, nb_cells)) if a != b)
    (py_type, py_src), (nb_type, nb_src) = py_cells[i], nb_cells[i]
    if py_type != nb_type:
        return f"cell {i} is {py_type} in the .py, {nb_type} in the .ipynb"
    py_lines, nb_lines = py_src.splitlines(), nb_src.splitlines()
    j = next(
        (j for j, (a, b) in enumerate(zip(py_lines, nb_lines)) if a != b),
        min(len(py_lines), len(nb_lines)),
    )
    py_line = py_lines[j] if j < len(py_lines) else "<end of cell>"
    nb_line = nb_lines[j] if j < len(nb_lines) else "<end of cell>"
    return f"cell {i}, line {j + 1}: .py has {py_line!r}, .ipynb has {nb_line!r}"


@by_lecture
def test_notebook_runs(lecture: Path, kernel_dir: Path) -> None:
    """Execute the .ipynb top to bottom in a fresh kernel, cwd lectures/, in fast mode."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    notebook = nbformat.read(lecture.with_suffix(".ipynb"), as_version=4)
    km = AsyncKernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
    )
    client = nbclient.NotebookClient(
        notebook,
        km=km,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(LECTURES)}},
    )
    before = files_outside_outputs()
    client.execute(env=lecture_env())  # raises CellExecutionError naming the failing cell
    created = files_outside_outputs() - before
    assert not created, f"{lecture.name} wrote outside lectures/outputs/: {sorted(created)}"


@by_lecture
def test_script_has_no_notebook_only_code(lecture: Path) -> None:
    """``python lectures/NN_name.py`` runs the same cells, so they must be plain Python.

    The cells are those of the notebook run above; what could work in a kernel and
    fail in a script is IPython's syntax and builtins. Magics are comments in the
    percent format, so what is left to catch is top-level ``await`` (a SyntaxError
    outside IPython) and ``display`` / ``get_ipython`` used without importing them.
    Checked statically: running every lecture a second time would double this file's
    time.
    """
    source = lecture.read_text(encoding="utf-8")
    compile(source, str(lecture), "exec")  # raises SyntaxError, e.g. for a top-level await
    tree = ast.parse(source)
    imported = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    missing = sorted((used & IPYTHON_BUILTINS) - imported)
    assert not missing, (
        f"{lecture.name} uses {missing}, which exist only inside IPython; "
        "use print / plt.show(), or import them from IPython.display"
    )
