"""Benchmark the pipeline-to-DAG path against plain Airflow, as ratios measured in the same run.

Run with ``make bench`` (``.venv/bin/python bench/run.py``); writes ``bench/RESULTS.md``.

1. Build + translate: for each shape and size, build the pipeline (steps and ``Pipeline(...)``, which
   validates), compute its spec and translate it with ``build_dag``; the baseline builds the same
   edges as a DAG of ``EmptyOperator`` s.
2. DAG-file parse: write the generated DAG file (``write_dag_file``) and a hand-written one with the
   same edges, and let ``parse_worker.py`` parse and serialise both as Airflow's DAG processor does.
3. Runs through Airflow (``runs.py``).
4. Data transfer (``transfer.py``): ``copy_files`` against plain and hand-tuned ``azure-storage-blob``
   code, on Azurite. ``--transfer-only`` runs just this part and prints its section instead of
   writing ``bench/RESULTS.md`` (which only a full run writes).

It exits non-zero only when something fails (a DAG with the wrong edges, an import error, ...), never
because a ratio misses its goal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import report
from graphs import SHAPES, Graph, make_graph

if TYPE_CHECKING:
    from builders import BuildTimes

    from aml_airflow_provider.core import Workspace
    from aml_airflow_provider.spec import PipelineSpec

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"
COMMAND = ".venv/bin/python bench/run.py"

SIZES = (10, 100, 1000, 5000)
#: Builds per graph (the median is reported); a 5,000-step build takes seconds.
BUILD_REPEATS = {10: 7, 100: 5, 1000: 3, 5000: 1}
#: Parses per DAG file, each in a new fork (the median is reported).
PARSE_REPEATS = {10: 5, 100: 5, 1000: 5, 5000: 3}
#: The size at which the shape with the worst ratio is profiled (about a second under cProfile).
PROFILE_SIZE = 1000
#: What parsing a generated DAG file imports from the package.
PACKAGE_MODULES = (
    "aml_airflow_provider.dagfile",
    "aml_airflow_provider.translate",
    "aml_airflow_provider.operators.python_script_step",
)


def prepare_workdir() -> Path:
    """A fresh folder under ``.bench/`` with an ``AIRFLOW_HOME``; point this process at it."""
    (ROOT / ".bench").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT / ".bench"))
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # no INFO line per parsed file
    (workdir / "src").mkdir()
    (workdir / "src" / "noop.py").write_text("")
    return workdir


def run_builds(ws: Workspace, graphs: list[Graph], source_dir: Path) -> dict[str, tuple[BuildTimes, PipelineSpec]]:
    """``{graph name: (BuildTimes, spec)}`` for every graph."""
    from builders import time_build

    time_build(ws, graphs[0], source_dir, 1)  # warm-up: first-use imports and caches are not measured
    results = {}
    for graph in graphs:
        times, spec = time_build(ws, graph, source_dir, BUILD_REPEATS[graph.size])
        print(f"build {graph.name}: {times.total:.3f}s vs baseline {times.baseline:.3f}s", flush=True)
        results[graph.name] = (times, spec)
    return results


def write_dag_files(graphs: list[Graph], specs: dict[str, PipelineSpec], workdir: Path) -> list[dict[str, Any]]:
    """Write a generated and a hand-written DAG file per graph; return the parse jobs, a pair per graph."""
    from builders import hand_written_source

    from aml_airflow_provider.dagfile import write_dag_file

    generated, hand = workdir / "dags_generated", workdir / "dags_hand"
    hand.mkdir()
    pairs = []
    for graph in graphs:
        gen_path = write_dag_file(generated, graph.name, specs[graph.name], title=f"Benchmark DAG {graph.name}")
        hand_path = hand / f"{graph.name}.py"
        hand_path.write_text(hand_written_source(graph))
        common = {"dag_id": graph.name, "tasks": graph.size}
        files = [
            {**common, "kind": "hand", "path": str(hand_path), "bundle": str(hand), "preload": [], "profile": False},
            {
                **common,
                "kind": "generated",
                "path": str(gen_path),
                "bundle": str(generated),
                "preload": PACKAGE_MODULES,
                "profile": graph.size == PROFILE_SIZE,
            },
        ]
        pairs.append({"graph": graph.name, "repeats": PARSE_REPEATS[graph.size], "files": files})
    return pairs


def run_parse_worker(pairs: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """Run ``parse_worker.py`` in a fresh interpreter on ``pairs``; return its results, one per file."""
    pairs_path, results_path = workdir / "pairs.json", workdir / "results.json"
    pairs_path.write_text(json.dumps(pairs))
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "parse_worker.py"), str(pairs_path), str(results_path)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(results_path.read_text())


def parse_medians(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(graph, kind): {metric: median over the runs}}``."""
    medians = {}
    for result in results:
        runs = result["runs"]
        medians[result["graph"], result["kind"]] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return medians


def run_runs_worker(workdir: Path) -> dict[str, Any]:
    """Run ``runs.py`` (pipeline runs against a BashOperator chain) in a fresh interpreter; return its results."""
    folder, results_path = workdir / "runs", workdir / "runs.json"
    folder.mkdir()
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "runs.py"), str(folder), str(results_path)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads(results_path.read_text())


def run_server_runs_worker(workdir: Path) -> dict[str, Any]:
    """Run ``server_runs.py`` (it starts and stops its own Airflow server); return its results."""
    results = workdir / "server_runs.json"
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "server_runs.py"), str(workdir / "server"), str(results)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(results.read_text())


def run_transfer_worker(workdir: Path) -> dict[str, Any]:
    """Run ``transfer.py`` (data transfer on Azurite) in a fresh interpreter; return its results.

    Its progress lines (one per measurement) go to this process's output.
    """
    folder, results_path = workdir / "transfer", workdir / "transfer.json"
    folder.mkdir()
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "transfer.py"), str(folder), str(results_path)], check=True, cwd=ROOT
    )
    return json.loads(results_path.read_text())


def profile_build(ws: Workspace, graph: Graph, source_dir: Path) -> dict[str, Any]:
    """cProfile of building, compiling and translating ``graph``."""
    from builders import build_pipeline
    from profiling import profile_call

    from aml_airflow_provider.translate import build_dag

    return profile_call(lambda: build_dag(build_pipeline(ws, graph, source_dir).spec, graph.name))


def worst_at_profile_size(graphs: list[Graph], ratio: dict[str, float]) -> Graph:
    """The graph of :data:`PROFILE_SIZE` steps whose ratio is the largest."""
    return max((g for g in graphs if g.size == PROFILE_SIZE), key=lambda g: ratio[g.name])


def transfer_only() -> None:
    """Run only the data-transfer benchmark and print its section of ``RESULTS.md``."""
    started = time.perf_counter()
    workdir = prepare_workdir()
    transfer = run_transfer_worker(workdir)
    shutil.rmtree(workdir)
    print(f"\n{report.transfer_section(transfer, report.machine())}\n")
    for title, profile in report.transfer_profile(transfer).items():
        print(report.profile_tables(title, profile))
    print(f"transfer benchmark done in {time.perf_counter() - started:.0f}s; {RESULTS.name} not written")


def main() -> None:
    """Run every measurement and write ``bench/RESULTS.md``."""
    parser = argparse.ArgumentParser(description="Benchmarks; results go to bench/RESULTS.md.")
    parser.add_argument(
        "--transfer-only", action="store_true", help="run only the data-transfer part and print its results"
    )
    if parser.parse_args().transfer_only:
        transfer_only()
        return
    started = time.perf_counter()
    workdir = prepare_workdir()
    # Airflow reads AIRFLOW_HOME when first imported, so nothing that imports it is imported earlier.
    from aml_airflow_provider.core import Workspace

    ws = Workspace.create("benchws", exist_ok=True, show_output=False)
    graphs = [make_graph(shape, size) for size in SIZES for shape in SHAPES]
    source_dir = workdir / "src"

    builds = run_builds(ws, graphs, source_dir)
    worst_build = worst_at_profile_size(graphs, {n: t.total / t.baseline for n, (t, _) in builds.items()})
    build_profile = profile_build(ws, worst_build, source_dir)

    pairs = write_dag_files(graphs, {name: spec for name, (_, spec) in builds.items()}, workdir)
    print(f"parsing {2 * len(pairs)} DAG files", flush=True)
    results = run_parse_worker(pairs, workdir)
    parses = parse_medians(results)
    worst_parse = worst_at_profile_size(
        graphs, {g.name: parses[g.name, "generated"]["parse"] / parses[g.name, "hand"]["parse"] for g in graphs}
    )
    parse_profile = next(r["profile"] for r in results if r["graph"] == worst_parse.name and r["profile"])
    print("running pipelines through Airflow", flush=True)
    runs = run_runs_worker(workdir)
    print("running pipelines on a LocalExecutor server", flush=True)
    server_runs = run_server_runs_worker(workdir)
    print("moving data through Azurite", flush=True)
    transfer = run_transfer_worker(workdir)

    RESULTS.write_text(
        report.render(
            graphs=graphs,
            builds={name: times for name, (times, _) in builds.items()},
            parses=parses,
            runs=runs,
            server_runs=server_runs,
            transfer=transfer,
            profiles={
                f"build + translate of {worst_build.name}": build_profile,
                f"parse + serialise of the generated {worst_parse.name} file": parse_profile,
            },
            command=COMMAND,
            runtime=time.perf_counter() - started,
            build_repeats=BUILD_REPEATS,
            parse_repeats=PARSE_REPEATS,
            profile_size=PROFILE_SIZE,
        )
    )
    shutil.rmtree(workdir)
    print(f"wrote {RESULTS.relative_to(ROOT)} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
