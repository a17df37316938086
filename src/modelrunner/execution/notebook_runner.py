"""A notebook model's attempt: ``python .../notebook_runner.py [--environment FILE] NOTEBOOK``,
started in the model folder under the model contract (``execution/forms.py`` builds this command).

It is run as a file, by the model's interpreter: the one of the model's own environment when it
has one (``--environment`` names its file), which holds papermill but not modelrunner. So it
imports nothing of modelrunner, only the standard library and the notebook tools.

It runs the notebook with papermill, the field's tool for it:

- The run's parameters are injected the papermill way, after the cell tagged ``parameters``,
  together with ``modelrunner_inputs``, ``modelrunner_outputs`` and ``modelrunner_checkpoint``
  (the contract's folders, as strings) and, in a fan-out, ``modelrunner_item``; these names win
  over parameters of the same name.
- The kernel runs under this interpreter (the model's environment when it has one), whatever
  kernel the notebook was saved with, unless the notebook is not Python (an R notebook keeps its
  kernel).
- What the cells print reaches the attempt's log as they print it; progress is reported cell by
  cell (fraction = code cells done / code cells) until the notebook reports its own with
  ``modelrunner.job.progress`` (or a ``::progress::`` line): from then on only its own counts.
- The executed notebook and its HTML rendering are written to the outputs folder as
  ``<stem>.ipynb`` and ``<stem>.html``, also when a cell fails; the failing cell is named in the
  attempt's error (through ``MODELRUNNER_FAILURE_NOTE``).
"""

from __future__ import annotations

import contextlib
import json
import keyword
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpec

# Run as a file, Python puts this file's folder first on sys.path, where modelrunner's execution
# modules (job.py, process.py, ...) would shadow the notebook tools' imports of the same names.
if sys.path and sys.path[0] and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

# As in modelrunner/execution/failure_note.py, which reads the note (not imported: see above).
FAILURE_NOTE = "MODELRUNNER_FAILURE_NOTE"
LONGEST_NOTE = 500
CONTRACT_PARAMETERS = ("modelrunner_inputs", "modelrunner_outputs", "modelrunner_checkpoint", "modelrunner_item")
_PARAMETERS_TAG = "parameters"
_INJECTED_TAG = "injected-parameters"
_ERROR_MARKER_TAG = "papermill-error-cell-tag"


class NotebookFailed(Exception):
    """The notebook did not run to its end; the message says where and why, in one line."""


def main(argv: list[str]) -> int:
    environment = None
    if argv[:1] == ["--environment"] and len(argv) == 3:
        environment, argv = argv[1], argv[2:]
    if len(argv) != 1:
        print("usage: notebook_runner.py [--environment FILE] NOTEBOOK", file=sys.stderr)
        return 2
    notebook = Path(argv[0])
    # A stop (cancel, timeout) sends SIGTERM to the kernel too: its cell ends with the kernel, and
    # this process still writes the executed notebook and its HTML before it exits.
    signal.signal(signal.SIGTERM, _note_stop)
    try:
        run_notebook(notebook, Path(_contract("MODELRUNNER_OUTPUTS")), environment)
    except NotebookFailed as exc:
        _fail(str(exc))
        return 1
    return 0


def run_notebook(notebook: Path, outputs: Path, environment: str | None = None) -> None:
    """Execute ``notebook`` with the run's parameters; the executed notebook and its HTML land in
    ``outputs`` whether it succeeds or not. NotebookFailed says why it did not. ``environment``
    is the file of the model's own environment this interpreter belongs to, if any."""
    try:
        import ipykernel  # noqa: F401 (the kernel's, here only to say it is missing before it starts)
        import nbconvert  # noqa: F401
        import nbformat
        import papermill
    except ModuleNotFoundError as exc:
        raise NotebookFailed(_missing_library_message(exc.name or "papermill", environment)) from exc
    try:
        source = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError) as exc:  # nbformat's validation errors are ValueErrors too
        raise NotebookFailed(f"{notebook} is not a notebook that can be read: {_last_line(str(exc))}") from exc
    html = _HtmlWriter()
    _isolate_jupyter_files()
    logging.getLogger("papermill").addFilter(_contract_parameters_are_known)
    executed = outputs / f"{notebook.stem}.ipynb"
    relay = _Relay(sys.stdout, sys.stderr)
    cells = _CellProgress(_code_cells(source), relay)
    kernel = _kernel_of(source)
    parameters = _parameters()
    if kernel is None:
        _check_python_names(parameters)
    # A Python notebook runs in a kernel of this interpreter, whatever kernel it was saved with.
    chosen: dict[str, Any] = {"kernel_name": kernel} if kernel else {"kernel_manager_class": _this_interpreter_kernel()}
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=parameters,
            progress_bar=False,  # its tqdm bar would be read as the model's progress
            stdout_file=relay.stdout,
            stderr_file=relay.stderr,
            cwd=str(notebook.resolve().parent),  # as Jupyter runs it: paths next to the notebook work
            on_cell_start=cells.cell_started,
            **chosen,
        )
    except papermill.PapermillExecutionError as exc:
        print(str(exc).strip("\n-"), file=sys.stderr)
        raise NotebookFailed(_failed_cell(executed, exc)) from exc
    except Stopped as exc:
        raise NotebookFailed("stopped before the notebook ran to its end") from exc
    except Exception as exc:  # a kernel that died or never started: the notebook so far is still written
        traceback.print_exc()
        reason = _last_line(str(exc)) or type(exc).__name__
        raise NotebookFailed(f"the notebook could not run to its end: {reason}") from exc
    finally:
        sys.stdout.flush()
        html.write(executed)
    cells.finished()


class _Relay:
    """The kernel's stdout and stderr, copied to this process's as they arrive. Notes whether
    the notebook reports progress itself, and keeps this runner's own lines on lines of their own."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = _Stream(self, stdout, watch=True)
        self.stderr = _Stream(self, stderr, watch=False)
        self.at_line_start = True
        self.own_progress = False

    def say(self, line: str) -> None:
        target = self.stdout.target
        target.write(("" if self.at_line_start else "\n") + line + "\n")
        target.flush()
        self.at_line_start = True


class _Stream:
    def __init__(self, relay: _Relay, target: TextIO, watch: bool) -> None:
        self._relay = relay
        self.target = target
        self._watch = watch
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        self.target.flush()
        if text:
            self._relay.at_line_start = text.endswith("\n")
        if self._watch and not self._relay.own_progress:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()[:64]  # enough to see a progress line's start
            if any(line.startswith("::progress::") for line in lines):
                self._relay.own_progress = True
        return len(text)

    def flush(self) -> None:
        self.target.flush()


class _CellProgress:
    """``::progress::`` lines as code cells start, while the notebook reports none of its own."""

    def __init__(self, total: int, relay: _Relay) -> None:
        self._total = max(total, 1)
        self._relay = relay
        self._started = 0

    def cell_started(self, cell: Any, cell_index: int) -> None:
        if _STOPPING.is_set():
            raise Stopped("stopped")
        if cell.cell_type != "code" or not cell.source.strip():
            return  # nbclient skips it
        self._started += 1
        self._report(self._started - 1, f"cell {self._started} of {self._total}")

    def finished(self) -> None:
        self._report(self._total, f"{self._total} of {self._total} cells ran")

    def _report(self, done: int, message: str) -> None:
        if not self._relay.own_progress:
            self._relay.say(f"::progress:: {min(done / self._total, 1.0):.4f} {message}")


def _code_cells(notebook: Any) -> int:
    """The code cells nbclient will run: the notebook's own, and the cell of injected parameters
    (papermill adds it, unless the notebook has one already from an earlier run)."""
    own = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]
    injected_before = any(_INJECTED_TAG in c.metadata.get("tags", []) for c in notebook.cells)
    return len(own) + (0 if injected_before else 1)


def _parameters() -> dict[str, Any]:
    with open(_contract("MODELRUNNER_PARAMS"), encoding="utf-8") as handle:
        parameters: dict[str, Any] = json.load(handle)
    parameters["modelrunner_inputs"] = _contract("MODELRUNNER_INPUTS")
    parameters["modelrunner_outputs"] = _contract("MODELRUNNER_OUTPUTS")
    parameters["modelrunner_checkpoint"] = _contract("MODELRUNNER_CHECKPOINT")
    item = os.environ.get("MODELRUNNER_ITEM")
    if item is not None:
        parameters["modelrunner_item"] = json.loads(item)
    return parameters


def _check_python_names(parameters: dict[str, Any]) -> None:
    # papermill writes `name = value` lines: a name that is no Python variable breaks the cell.
    for name in parameters:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise NotebookFailed(f"the parameter {name!r} cannot be a variable of a Python notebook: rename it")


def _kernel_of(notebook: Any) -> str | None:
    """The kernel to run a notebook that is not Python in; None for Python, which runs in a
    kernel of this interpreter whatever kernel name it was saved with."""
    kernelspec = notebook.metadata.get("kernelspec", {})
    language = kernelspec.get("language") or notebook.metadata.get("language_info", {}).get("name") or "python"
    if language.lower() == "python":
        return None
    name: str | None = kernelspec.get("name")
    if not name:
        raise NotebookFailed(f"the notebook's language is {language}, but it names no kernel (metadata.kernelspec)")
    return name


def _this_interpreter_kernel() -> type:
    """A kernel manager whose kernel is ipykernel under this interpreter: a notebook saved with
    another Python kernel (a name of its author's machine) still runs in the model's environment."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=f"Python {sys.version_info.major}.{sys.version_info.minor}",
                language="python",
                resource_dir="",
            )

    class ThisInterpreterKernel(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _this_interpreter(self) -> KernelSpecManager:
            return ThisInterpreter()

        @default("transport")
        def _unix_sockets(self) -> str:
            # Sockets in the attempt's own runtime folder rather than ports any local user can reach.
            return "ipc"

    return ThisInterpreterKernel


def _contract_parameters_are_known(record: logging.LogRecord) -> bool:
    # papermill warns of each parameter the notebook's parameters cell does not assign; a
    # notebook need not mention the contract's folders.
    return not any(record.getMessage().endswith(f": {name}") for name in CONTRACT_PARAMETERS)


def _isolate_jupyter_files() -> None:
    """Jupyter's and IPython's own files (connection files, history, profiles) go to the
    attempt's temporary folder: a model may have no home folder, and must not share one."""
    temporary = Path(os.environ.get("TMPDIR") or tempfile.mkdtemp(prefix="modelrunner-notebook-"))
    os.environ["JUPYTER_RUNTIME_DIR"] = str(temporary / "jupyter-runtime")
    os.environ["IPYTHONDIR"] = str(temporary / "ipython")
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"  # jupyter_core warns on every start without it


def _failed_cell(executed: Path, error: Any) -> str:
    """Which cell of the notebook failed (as its author counts them, and its ``In [n]``), and
    the last line of its exception."""
    where = _source_cell(executed)
    if error.exec_count is not None:
        where += f" (In [{error.exec_count}])"
    what = _last_line(f"{error.ename}: {error.evalue}" if error.evalue else str(error.ename))
    return f"the notebook failed in {where}: {what}"


def _source_cell(executed: Path) -> str:
    """The cell papermill marks as failed, by its 1-based position in the notebook as written
    (the executed notebook has cells of its own: the injected parameters and error markers)."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return "a cell"
    number = 0
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        failed = cell.get("metadata", {}).get("papermill", {}).get("exception")
        if _INJECTED_TAG in tags and failed:
            return "the cell of injected parameters"
        if _INJECTED_TAG in tags or _ERROR_MARKER_TAG in tags:
            continue
        number += 1
        if failed:
            return f"cell {number}"
    return "a cell"


class _HtmlWriter:
    """Renders the executed notebook as ``<stem>.html`` beside it. An exporter's first rendering
    costs a second or more (templates, highlighting), so one is made and warmed up on a thread
    while the kernel starts and the notebook runs; the rendering itself then takes milliseconds."""

    def __init__(self) -> None:
        self._exporter: Any = None
        self._warm = threading.Thread(target=self._warm_up, name="html-warm-up", daemon=True)
        self._warm.start()

    def _warm_up(self) -> None:
        with contextlib.suppress(Exception):  # write() makes a cold one and reports what fails
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter()
            cell = nbformat.v4.new_code_cell(
                "1", outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "1"})]
            )
            exporter.from_notebook_node(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("#"), cell]))
            self._exporter = exporter

    def write(self, executed: Path) -> None:
        """``<stem>.html`` beside the executed notebook, when there is one; a rendering that fails
        is reported, never the attempt's error."""
        if not executed.is_file():
            return
        self._warm.join()
        try:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = self._exporter or HTMLExporter()
            body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
            executed.with_suffix(".html").write_text(body, encoding="utf-8")
        except Exception as exc:
            # A validation error's first line says what is wrong; the rest is the schema and the notebook.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"modelrunner: the HTML rendering of {executed.name} failed: {reason}", file=sys.stderr)


def _missing_library_message(module: str, environment: str | None) -> str:
    library = module.partition(".")[0]
    if environment is not None:
        return (
            f"a notebook model needs {library}, which its environment ({environment}) does not install: "
            "add papermill, nbconvert and ipykernel to it"
        )
    # As modelrunner/extras.py names the extra.
    return f"a notebook model needs {library}, which is not installed: pip install 'modelrunner[notebook]'"


def _contract(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise NotebookFailed(f"{variable} is not set: a notebook model runs under modelrunner")
    return value


def _fail(note: str) -> None:
    note = note[:LONGEST_NOTE]
    print(f"modelrunner: {note}", file=sys.stderr, flush=True)
    where = os.environ.get(FAILURE_NOTE)
    if where:
        with contextlib.suppress(OSError):  # the log has it
            Path(where).write_text(note + "\n", encoding="utf-8")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


_STOPPING = threading.Event()


class Stopped(Exception):
    """The attempt was stopped (SIGTERM) before the notebook's next cell."""


def _note_stop(_signum: int, _frame: FrameType | None) -> None:
    # A running cell ends with its kernel, which got the same signal; no cell starts after it.
    _STOPPING.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
