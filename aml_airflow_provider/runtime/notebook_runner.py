"""Runs a Databricks SOURCE-format notebook on local Spark; spark-submit executes this file as a plain script."""

# Usage: spark-submit notebook_runner.py NOTEBOOK EXIT_FILE WIDGETS
#   WIDGETS    a JSON object of the notebook parameters (name to string)
#   EXIT_FILE  receives str(value) when the notebook calls dbutils.notebook.exit(value); absent otherwise
# Exit status: 0 when every cell ran or the notebook exited; 1 on an error, after the traceback and the
# failing cell's number are printed to stderr (spark-submit merges the driver's stderr into its stdout).
# The driver's interpreter runs this file directly, so it must not import aml_airflow_provider.

from __future__ import annotations

import builtins
import json
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"
TITLE = "# DBTITLE"
SKIPPED_MAGICS = frozenset({"%md", "%md-sandbox"})


class NotebookError(Exception):
    """The notebook cannot run on local Spark (a cell in a language other than Python or markdown)."""


class InputWidgetNotDefined(Exception):
    """``dbutils.widgets.get`` of a widget that is neither defined nor passed (as Databricks raises it)."""


class NotAvailableOnLocalSpark(AttributeError):
    """A ``dbutils`` utility that only a Databricks cluster provides."""


class NotebookExit(BaseException):
    """Raised by ``dbutils.notebook.exit``; a BaseException so that ``except Exception`` in a cell cannot stop it."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


@dataclass(frozen=True)
class Cell:
    """One cell of the notebook.

    :param number: its position, from 1 (as the Databricks UI numbers cells)
    :param first_line: its first line in the file, from 1
    :param source: the Python to run (the ``# MAGIC`` prefix removed), or "" for a skipped cell
    :param magic: the cell's ``%`` command if it is a ``# MAGIC`` cell
    """

    number: int
    first_line: int
    source: str
    magic: str | None = None


def _unmagic(line: str) -> str:
    if line.startswith(MAGIC + " "):
        return line[len(MAGIC) + 1 :]
    if line.startswith(MAGIC):
        return line[len(MAGIC) :]
    return line


def _make_cell(number: int, first_line: int, lines: list[str]) -> Cell:
    content = [line for line in lines if line.strip() and not line.startswith(TITLE)]
    if not content or not all(line.startswith(MAGIC) for line in content):
        return Cell(number, first_line, "\n".join(lines))
    code = [_unmagic(line) for line in lines]
    first = next((i for i, line in enumerate(code) if line.strip() and not lines[i].startswith(TITLE)), None)
    if first is None:
        return Cell(number, first_line, "")
    magic = code[first].split()[0]
    if not magic.startswith("%"):
        raise NotebookError(f"cell {number} is a MAGIC cell without a %command")
    if magic in SKIPPED_MAGICS:
        return Cell(number, first_line, "", magic)
    if magic != "%python":
        raise NotebookError(f"cell {number} is a {magic} cell")
    # Blank the %python line rather than drop it, so line numbers still match the file.
    code[first] = code[first].strip()[len("%python") :].strip()
    return Cell(number, first_line, "\n".join(code), magic)


def parse_notebook(text: str) -> list[Cell]:
    """Split a notebook into cells; the header line is dropped, markdown cells are kept with no source.

    :param text: the notebook file's content
    :raises NotebookError: naming every cell in another language (``%sql``, ``%scala``, ``%sh``, ``%run``...)
    """
    lines = text.removeprefix("\ufeff").splitlines()
    start = 1 if lines and lines[0].startswith(HEADER) else 0
    cells: list[Cell] = []
    problems: list[str] = []
    current: list[str] = []
    current_first = start + 1
    for index in range(start, len(lines) + 1):
        if index < len(lines) and lines[index].rstrip() != SEPARATOR:
            current.append(lines[index])
            continue
        try:
            cells.append(_make_cell(len(cells) + len(problems) + 1, current_first, current))
        except NotebookError as problem:
            problems.append(str(problem))
        current, current_first = [], index + 2
    if problems:
        raise NotebookError(
            "; ".join(problems) + ": local Spark runs Python and markdown cells only "
            "(run the notebook on a Databricks cluster for %sql, %scala, %r, %sh, %pip, %run, %fs)"
        )
    return cells


class Widgets:
    """``dbutils.widgets``: the values passed to the notebook, else the defaults of the widgets it defines.

    Passed values stay available after ``remove``/``removeAll``, like job parameters on Databricks.
    """

    def __init__(self, passed: Mapping[str, str]) -> None:
        self._passed = dict(passed)
        self._defaults: dict[str, str] = {}

    def _define(self, name: str, defaultValue: str) -> None:
        self._defaults[name] = str(defaultValue)

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: Any = None, label: str | None = None) -> None:
        self._define(name, defaultValue)

    def combobox(self, name: str, defaultValue: str, choices: Any = None, label: str | None = None) -> None:
        self._define(name, defaultValue)

    def multiselect(self, name: str, defaultValue: str, choices: Any = None, label: str | None = None) -> None:
        self._define(name, defaultValue)

    def getAll(self) -> dict[str, str]:
        return {**self._defaults, **self._passed}

    def get(self, name: str) -> str:
        values = self.getAll()
        if name not in values:
            known = ", ".join(repr(n) for n in sorted(values)) or "none"
            raise InputWidgetNotDefined(f"No input widget named {name!r} is defined (known widgets: {known})")
        return values[name]

    def getArgument(self, name: str, default: str | None = None) -> str | None:
        return self.getAll().get(name, default)

    def remove(self, name: str) -> None:
        if name not in self._defaults and name not in self._passed:
            raise InputWidgetNotDefined(f"No input widget named {name!r} is defined")
        self._defaults.pop(name, None)

    def removeAll(self) -> None:
        self._defaults.clear()

    def __getattr__(self, name: str) -> Any:
        raise _not_available(f"widgets.{name}", name)


class NotebookUtils:
    """``dbutils.notebook``: only ``exit``."""

    def exit(self, value: Any) -> None:
        raise NotebookExit(str(value))

    def __getattr__(self, name: str) -> Any:
        raise _not_available(f"notebook.{name}", name)


class DBUtils:
    """A minimal ``dbutils``: ``widgets`` and ``notebook.exit``; every other utility raises a clear error."""

    def __init__(self, widgets: Mapping[str, str]) -> None:
        self.widgets = Widgets(widgets)
        self.notebook = NotebookUtils()

    def __getattr__(self, name: str) -> Any:
        raise _not_available(name, name)


def _not_available(what: str, name: str) -> AttributeError:
    if name.startswith("_"):
        # copy, pickle and friends probe dunder attributes; they expect a plain AttributeError.
        return AttributeError(name)
    return NotAvailableOnLocalSpark(
        f"dbutils.{what} is not available on local Spark, which provides only dbutils.widgets and "
        "dbutils.notebook.exit; run the notebook on a Databricks cluster to use it"
    )


def display(obj: Any = None, *args: Any, **kwargs: Any) -> None:
    """Databricks' ``display``: shows a Spark DataFrame as a table, prints anything else."""
    from pyspark.sql import DataFrame

    if isinstance(obj, DataFrame):
        obj.show()
    else:
        print(obj)


def displayHTML(html: str) -> None:
    """Databricks' ``displayHTML``: the HTML is printed."""
    print(html)


def _write_exit_value(exit_file: str, value: str) -> None:
    os.makedirs(os.path.dirname(exit_file) or ".", exist_ok=True)
    partial = exit_file + ".partial"
    with open(partial, "w", encoding="utf-8", newline="") as f:
        f.write(value)
    # Readers never see a half-written value.
    os.replace(partial, exit_file)


def _describe_failure(error: BaseException, cell: Cell, notebook: str) -> str:
    tb = error.__traceback__
    # Start the traceback at the notebook: the frames above it are this runner's.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    trace = "".join(traceback.format_exception(type(error), error, tb))
    summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    return f"{trace}\nNotebook {notebook} failed in cell {cell.number}: {summary}"


def run_cells(cells: list[Cell], namespace: dict[str, Any], notebook: str, exit_file: str) -> tuple[int, str | None]:
    """Run the cells in order in one namespace.

    :return: the exit status and, on failure, the message for stderr
    """
    for cell in cells:
        if not cell.source.strip():
            continue
        try:
            # Padding puts each line at its line number in the file, so tracebacks point into the notebook.
            code = compile("\n" * (cell.first_line - 1) + cell.source, notebook, "exec", dont_inherit=True)
            exec(code, namespace)
        except NotebookExit as stop:
            _write_exit_value(exit_file, stop.value)
            print(f"Notebook exited in cell {cell.number}: {stop.value}", flush=True)
            return 0, None
        except SystemExit as stop:
            if stop.code in (None, 0):
                return 0, None
            status = stop.code if isinstance(stop.code, int) else 1
            return status, f"Notebook {notebook} called sys.exit({stop.code!r}) in cell {cell.number}"
        except BaseException as error:
            return 1, _describe_failure(error, cell, notebook)
    return 0, None


def main(argv: list[str]) -> int:
    """Run the notebook ``argv[0]`` with the widgets ``argv[2]`` (JSON); exit value to ``argv[1]``."""
    if len(argv) != 3:
        print("usage: notebook_runner.py NOTEBOOK EXIT_FILE WIDGETS_JSON", file=sys.stderr)
        return 2
    notebook, exit_file, widgets_json = os.path.abspath(argv[0]), os.path.abspath(argv[1]), argv[2]
    # A value left by an earlier attempt must not look like this run's.
    if os.path.exists(exit_file):
        os.remove(exit_file)
    widgets = json.loads(widgets_json)
    if not isinstance(widgets, dict) or not all(isinstance(v, str) for v in widgets.values()):
        print(f"WIDGETS must be a JSON object of strings, got {widgets_json!r}", file=sys.stderr)
        return 2
    with open(notebook, encoding="utf-8") as f:
        text = f.read()
    try:
        cells = parse_notebook(text)
    except NotebookError as error:
        print(f"Notebook {notebook} cannot run on local Spark: {error}", file=sys.stderr)
        return 1

    # Imports resolve next to the notebook (as in a Databricks repo), not next to this runner.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.path.dirname(notebook))

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(os.path.basename(notebook)).getOrCreate()
    dbutils = DBUtils(widgets)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__file__": notebook,
        "__builtins__": builtins,
        "spark": spark,
        "sc": spark.sparkContext,
        "dbutils": dbutils,
        "display": display,
        "displayHTML": displayHTML,
        "getArgument": dbutils.widgets.getArgument,
    }
    status, failure = run_cells(cells, namespace, notebook, exit_file)
    try:
        spark.stop()
    except Exception as error:  # the notebook's outcome is already decided; say why the stop failed
        print(f"Stopping the Spark session failed: {error!r}", file=sys.stderr)
    if failure:
        sys.stdout.flush()
        print(failure, file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
