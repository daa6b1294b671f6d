"""Local Spark for Databricks steps: spark-submit commands, environment, and notebooks run by the runner."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.runtime import notebook_runner
from aml_airflow_provider.runtime.spark_local import (
    DATABRICKS_PYTHON,
    NOTEBOOK_RUNNER,
    SPARK_DEFAULT_CONF,
    is_notebook_source,
    notebook_command,
    read_exit_value,
    script_command,
    spark_environment,
    spark_submit_executable,
)

# Spaces, both quotes, '=', '&', a newline and non-ASCII: everything a shell or the JVM could mangle.
AWKWARD = 'He said "hi", it\'s a=b & c==d\nsecond line: naïve ☃ 数据'


def conf_of(argv: list[str]) -> dict[str, list[str]]:
    """Every ``--conf`` key with the values it was given, in order."""
    found: dict[str, list[str]] = {}
    for flag, pair in itertools.pairwise(argv):
        if flag == "--conf":
            key, _, value = pair.partition("=")
            found.setdefault(key, []).append(value)
    return found


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run a spark-submit command; return its exit code and its whole output.

    spark-submit's PythonRunner merges the driver's stderr into its stdout, so a traceback printed to
    stderr by the notebook arrives on stdout: the two streams are checked together.
    """
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def notebook(path: Path, *cells: str) -> Path:
    path.write_text("# Databricks notebook source\n" + "\n\n# COMMAND ----------\n\n".join(cells) + "\n")
    return path


# --- commands and environment -------------------------------------------------------------------


def test_spark_submit_comes_from_the_installed_pyspark_package():
    import pyspark

    executable = Path(spark_submit_executable())
    assert executable == Path(pyspark.__file__).parent / "bin" / "spark-submit"
    assert os.access(executable, os.X_OK)


def test_missing_pyspark_is_a_step_error_saying_what_to_install(monkeypatch):
    # None in sys.modules is how the import system marks a module as not importable.
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(StepRunError, match=r"pip install 'aml-airflow-provider\[spark\]'"):
        script_command("job.py", [])


def test_script_command_shape_and_user_conf_wins():
    argv = script_command(
        "jobs/etl.py",
        ["--date", "2024-01-01", "a b"],
        conf={"spark.sql.shuffle.partitions": "16", "spark.executor.memory": "2g"},
        master="local[2]",
    )
    assert argv[:3] == [spark_submit_executable(), "--master", "local[2]"]
    assert argv[-4:] == ["jobs/etl.py", "--date", "2024-01-01", "a b"]
    conf = conf_of(argv)
    # The user's value replaces the default instead of being passed next to it.
    assert conf["spark.sql.shuffle.partitions"] == ["16"]
    assert conf["spark.executor.memory"] == ["2g"]
    for key in ("spark.ui.enabled", "spark.driver.host", "spark.driver.bindAddress", "spark.ui.showConsoleProgress"):
        assert conf[key] == [SPARK_DEFAULT_CONF[key]]
    assert conf["spark.driver.bindAddress"] == ["127.0.0.1"]


def test_notebook_command_passes_widgets_as_one_ascii_json_argument(tmp_path):
    argv = notebook_command(
        "nb/daily.py", {"greeting": AWKWARD, "retries": 3, "dry_run": False}, "exit.txt", conf={"spark.x": "1"}
    )
    assert argv[:3] == [spark_submit_executable(), "--master", "local[*]"]
    assert conf_of(argv)["spark.x"] == ["1"]
    runner, nb, exit_file, widgets = argv[-4:]
    assert runner == NOTEBOOK_RUNNER and Path(runner).is_absolute() and Path(runner).is_file()
    assert nb == "nb/daily.py"
    assert exit_file == os.path.abspath("exit.txt")
    assert widgets.isascii()
    assert json.loads(widgets) == {"greeting": AWKWARD, "retries": "3", "dry_run": "false"}


def test_spark_environment_uses_this_machines_python_java_and_spark(tmp_path):
    base = {"PATH": os.environ["PATH"], "SPARK_HOME": "/opt/spark-3.1", "HOME": "/home/airflow"}
    cluster = {"PYSPARK_PYTHON": DATABRICKS_PYTHON, "JAVA_HOME": "/usr/lib/jvm/zulu17-ca-amd64", "STAGE": "dev"}
    env = spark_environment(base, cluster)
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert "SPARK_HOME" not in env
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["STAGE"] == "dev" and env["HOME"] == "/home/airflow"
    assert env["LANG"] == "C.UTF-8"
    if shutil.which("java"):
        assert (Path(env["JAVA_HOME"]) / "bin" / "java").is_file()

    chosen = spark_environment({"LANG": "de_DE.UTF-8", "JAVA_HOME": str(tmp_path)}, None, python="/opt/py/bin/python")
    assert chosen["PYSPARK_PYTHON"] == chosen["PYSPARK_DRIVER_PYTHON"] == "/opt/py/bin/python"
    assert chosen["LANG"] == "de_DE.UTF-8"
    assert chosen["JAVA_HOME"] == str(tmp_path)


def test_is_notebook_source(tmp_path):
    assert is_notebook_source(notebook(tmp_path / "nb.py", "print(1)"))
    (tmp_path / "bom.py").write_bytes("\ufeff# Databricks notebook source\nprint(1)\n".encode())
    assert is_notebook_source(tmp_path / "bom.py")
    (tmp_path / "script.py").write_text("# A plain script\nprint(1)\n")
    assert not is_notebook_source(tmp_path / "script.py")
    assert not is_notebook_source(tmp_path / "missing.py")
    assert not is_notebook_source(tmp_path)


# --- the notebook runner, in this process -------------------------------------------------------


def test_parse_skips_markdown_runs_magic_python_and_keeps_line_numbers():
    text = (
        "# Databricks notebook source\n"
        "# MAGIC %md\n# MAGIC # Title\n\n"
        "# COMMAND ----------\n\n"
        "x = 1\n\n"
        "# COMMAND ----------\n\n"
        "# DBTITLE 1,Double it\n# MAGIC %python\n# MAGIC y = x * 2\n"
    )
    md, plain, magic = notebook_runner.parse_notebook(text)
    assert (md.number, md.magic, md.source) == (1, "%md", "")
    assert plain.number == 2 and plain.source.strip() == "x = 1"
    assert magic.number == 3 and magic.magic == "%python"
    namespace = {"x": 1}
    exec(magic.source, namespace)
    assert namespace["y"] == 2
    # Cell line i is file line first_line + i, which is what tracebacks rely on.
    lines = text.splitlines()
    assert lines[magic.first_line - 1 + magic.source.splitlines().index("y = x * 2")] == "# MAGIC y = x * 2"


def test_widgets_passed_values_win_defaults_fill_in_and_removal_keeps_parameters():
    widgets = notebook_runner.DBUtils({"region": "eu west", "date": "2024-01-01"}).widgets
    widgets.text("region", "us")
    widgets.dropdown("size", "small", ["small", "large"])
    assert widgets.get("region") == "eu west"
    assert widgets.get("size") == "small"
    assert widgets.getArgument("absent", "fallback") == "fallback"
    with pytest.raises(notebook_runner.InputWidgetNotDefined, match=r"'absent'.*'date', 'region', 'size'"):
        widgets.get("absent")
    widgets.removeAll()
    # A job parameter outlives removeAll (Databricks notebooks often start with it); a defined default does not.
    assert widgets.get("region") == "eu west"
    with pytest.raises(notebook_runner.InputWidgetNotDefined, match="'size'"):
        widgets.get("size")


def test_dbutils_beyond_widgets_and_exit_says_it_needs_a_cluster():
    dbutils = notebook_runner.DBUtils({})
    for use in (lambda: dbutils.fs.ls("/"), lambda: dbutils.secrets.get("scope", "key"), lambda: dbutils.notebook.run):
        with pytest.raises(notebook_runner.NotAvailableOnLocalSpark, match="not available on local Spark"):
            use()


def test_exit_is_not_swallowed_by_except_exception_and_later_cells_do_not_run(tmp_path):
    text = (
        "# Databricks notebook source\n"
        "try:\n    dbutils.notebook.exit(42)\nexcept Exception:\n    ran.append('swallowed')\n\n"
        "# COMMAND ----------\n\n"
        "ran.append('after exit')\n"
    )
    ran: list[str] = []
    namespace = {"dbutils": notebook_runner.DBUtils({}), "ran": ran}
    exit_file = str(tmp_path / "exit.txt")
    status, failure = notebook_runner.run_cells(notebook_runner.parse_notebook(text), namespace, "nb.py", exit_file)
    assert (status, failure, ran) == (0, None, [])
    assert read_exit_value(exit_file) == "42"


# --- real spark-submit runs (each starts a JVM and, except the last, a Spark session) -----------


def test_script_runs_on_local_spark_with_its_arguments_conf_and_environment(tmp_path):
    (tmp_path / "words.txt").write_text("Spark runs here\nspark runs locally\n\nSPARK\n")
    script = tmp_path / "count_words.py"
    script.write_text(
        "import json, os, sys\n"
        "from pyspark.sql import SparkSession, functions as F\n"
        "source, target, label = sys.argv[1:]\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "lines = spark.read.text(source)\n"
        "words = lines.select(F.explode(F.split(F.lower('value'), ' ')).alias('w')).where(\"w != ''\")\n"
        "counts = {r['w']: r['count'] for r in words.groupBy('w').count().collect()}\n"
        "result = {'label': label, 'lines': lines.count(), 'counts': counts, 'stage': os.environ['STAGE'],\n"
        "          'partitions': spark.conf.get('spark.sql.shuffle.partitions'),\n"
        "          'ui': spark.sparkContext.getConf().get('spark.ui.enabled')}\n"
        "with open(target, 'w', encoding='utf-8') as f:\n"
        "    json.dump(result, f, ensure_ascii=False)\n"
        "spark.stop()\n"
    )
    # No locale, as on many workers: the JVM would turn the label's non-ASCII characters into '?'.
    base = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE")}
    env = spark_environment(base, {"PYSPARK_PYTHON": DATABRICKS_PYTHON, "STAGE": "dev"})
    argv = script_command(str(script), ["words.txt", "out.json", AWKWARD], conf={"spark.sql.shuffle.partitions": "3"})

    status, output = run(argv, env, tmp_path)

    assert status == 0, output
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == {
        "label": AWKWARD,
        "lines": 4,
        "counts": {"spark": 3, "runs": 2, "here": 1, "locally": 1},
        "stage": "dev",
        "partitions": "3",
        "ui": "false",
    }


def test_notebook_with_widgets_exits_with_its_value_and_skips_the_rest(tmp_path):
    # A module next to the notebook imports as in a Databricks repo (the process runs in tmp_path).
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "helpers.py").write_text("def shout(text):\n    return text.upper()\n")
    nb = notebook(
        tmp_path / "notebooks" / "daily.py",
        "# MAGIC %md\n# MAGIC # Daily totals\n# MAGIC Markdown is *skipped*.",
        "import json\n"
        "from helpers import shout\n"
        'dbutils.widgets.text("greeting", "unused default")\n'
        'dbutils.widgets.text("mode", "fast", "Mode")\n'
        'greeting = dbutils.widgets.get("greeting")\n'
        'mode = dbutils.widgets.get("mode")',
        "# MAGIC %python\n"
        '# MAGIC df = spark.createDataFrame([(greeting, n) for n in range(5)], "g string, n int")\n'
        '# MAGIC display(df.groupBy("g").sum("n"))',
        'row = df.groupBy("g").sum("n").first()\n'
        'dbutils.notebook.exit(json.dumps({"greeting": row["g"], "total": row["sum(n)"], "mode": shout(mode)}))',
        'open(dbutils.widgets.get("marker"), "w").write("ran after exit")',
    )
    exit_file = tmp_path / "out" / "exit.txt"
    argv = notebook_command(str(nb), {"greeting": AWKWARD, "marker": "after_exit.txt"}, str(exit_file))

    status, output = run(argv, spark_environment(os.environ), tmp_path)

    assert status == 0, output
    assert json.loads(read_exit_value(exit_file)) == {"greeting": AWKWARD, "total": 10, "mode": "FAST"}
    assert "|sum(n)|" in output  # display() showed the DataFrame
    assert not (tmp_path / "after_exit.txt").exists()


def test_notebook_failing_in_cell_2_reports_the_cell_and_the_missing_widget(tmp_path):
    nb = notebook(
        tmp_path / "failing.py",
        'open("cell1.txt", "w").write("ran")',
        'dbutils.widgets.text("region", "eu")\ntable = dbutils.widgets.get("missing")',
        'open("cell3.txt", "w").write("ran")',
    )
    exit_file = tmp_path / "exit.txt"
    exit_file.write_text("left by an earlier attempt")
    failing_line = nb.read_text().splitlines().index('table = dbutils.widgets.get("missing")') + 1

    status, output = run(
        notebook_command(str(nb), {"date": "2024-01-01"}, str(exit_file)), spark_environment(os.environ), tmp_path
    )

    assert status == 1, output
    assert "failed in cell 2: InputWidgetNotDefined: No input widget named 'missing'" in output
    assert "known widgets: 'date', 'region'" in output
    assert f'File "{nb}", line {failing_line}' in output  # the traceback points into the notebook
    assert (tmp_path / "cell1.txt").exists() and not (tmp_path / "cell3.txt").exists()
    assert read_exit_value(exit_file) is None


def test_sql_cell_is_refused_before_anything_runs(tmp_path):
    nb = notebook(
        tmp_path / "report.py",
        'open("cell1.txt", "w").write("ran")',
        "# MAGIC %md\n# MAGIC Totals below.",
        "# DBTITLE 1,Totals\n# MAGIC %sql\n# MAGIC SELECT count(*) FROM sales",
    )

    status, output = run(
        notebook_command(str(nb), {}, str(tmp_path / "exit.txt")), spark_environment(os.environ), tmp_path
    )

    assert status == 1, output
    assert "cell 3 is a %sql cell" in output
    assert "local Spark runs Python and markdown cells only" in output
    assert not (tmp_path / "cell1.txt").exists()
