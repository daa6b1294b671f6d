"""Render ``bench/RESULTS.md``: the machine, the method, one table per measurement, profiles, a summary."""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphs import Graph

if TYPE_CHECKING:
    from builders import BuildTimes

PARSE_GOAL = 1.2
#: A phase whose time grows faster than n**SUPERLINEAR from 1,000 to 5,000 steps is called out.
SUPERLINEAR = 1.3
#: The timed phases of a build, as named in the tables.
PHASES = ("model", "spec", "DAG")

METHOD = """\
- **Build + translate**: *model* = creating the `PipelineData` and `PythonScriptStep` objects and
  `Pipeline(...)` (which validates); *spec* = `pipeline.spec`; *DAG* = `build_dag(spec, dag_id)`.
  *Baseline* = the same tasks and edges built in Python as an `airflow.sdk.DAG` of `EmptyOperator`s,
  with the same DAG param (`regenerate_outputs`, which every translated DAG has: Airflow copies DAG
  params into every task and serialises them there, a cost any DAG with params pays).
  Every build is checked to give exactly the graph's edges. One process, one untimed warm-up build,
  `gc.collect()` before each timed block; builds per size (median reported): {build_repeats}.
- **DAG-file parse**: the generated file (`write_dag_file`: a two-line `.py` plus the spec as JSON)
  against a hand-written file that builds the same edges with `EmptyOperator` (a loop over an
  edge-list literal). A fresh interpreter does what the DAG processor manager does: it imports
  `airflow.dag_processing.processor`, pre-imports the `airflow.*` modules the file imports, freezes
  its heap (`gc.freeze()`), and forks one child per parse. The child runs the stability check, fills
  a `BundleDagBag` with the processor's arguments (`load_op_links=False`), checks there are no import
  errors and the expected number of tasks, and serialises the DAG with `DagSerialization.to_dict`.
  Files are byte-compiled first, as the processor's first parse would leave them; the two files of a
  graph take turns, so both see the same background load; parses per size (median reported):
  {parse_repeats}. The processor does not pre-import `aml_airflow_provider`, so every parse of a
  generated file imports it: that import is timed on its own in the same child just before the parse;
  *parse* excludes it, *incl. import* adds it. *GC* is the time the parse spent in the garbage collector.
- Profiles: the shape with the worst ratio at {profile_size:,} steps, under cProfile (which inflates times).
- Times are medians in milliseconds; a ratio is package time / baseline time from the same run."""


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, key: str, sep: str = ":") -> str:
    for line in text.splitlines():
        name, _, value = line.partition(sep)
        if name.strip() == key:
            return value.strip().strip('"')
    return "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + " (plus any uncommitted changes in the working tree)"


def machine() -> dict[str, str]:
    """The machine and software the benchmark ran on."""
    mem_kb = _field(_read("/proc/meminfo"), "MemTotal").split()[0]
    return {
        "CPU": _field(_read("/proc/cpuinfo"), "model name"),
        "Cores": f"{os.cpu_count()} logical",
        "RAM": f"{int(mem_kb) / 1024**2:.1f} GiB" if mem_kb.isdigit() else "unknown",
        "OS": f"{_field(_read('/etc/os-release'), 'PRETTY_NAME', '=')}, kernel {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Airflow": f"apache-airflow {version('apache-airflow')}, task-sdk {version('apache-airflow-task-sdk')}, "
        f"providers-standard {version('apache-airflow-providers-standard')}",
        "Package": f"aml-airflow-provider {version('aml-airflow-provider')}, commit {_git_commit()}",
    }


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _per_size(repeats: dict[int, int]) -> str:
    """``7, 5, 3 at 10, 100, 1,000 steps``."""
    counts, sizes = ", ".join(map(str, repeats.values())), ", ".join(f"{size:,}" for size in repeats)
    return f"{counts} at {sizes} steps"


def _growth(small: float, large: float, factor: float) -> float:
    """The exponent k in ``time ~ n**k`` between two sizes ``factor`` apart."""
    return math.log(large / small) / math.log(factor)


def build_table(graphs: list[Graph], builds: dict[str, BuildTimes]) -> str:
    """Per-size phase times, the ratio to the baseline and the cost per step and per step+edge."""
    rows = []
    for g in graphs:
        t = builds[g.name]
        rows.append(
            [
                g.shape,
                f"{g.size:,}",
                f"{len(g.edges):,}",
                _ms(t.model),
                _ms(t.spec),
                _ms(t.dag),
                f"**{_ms(t.total)}**",
                _ms(t.baseline),
                f"**{_x(t.total / t.baseline)}**",
                f"{t.total / g.size * 1e6:.0f}",
                f"{t.total / (g.size + len(g.edges)) * 1e6:.0f}",
                f"{t.baseline / g.size * 1e6:.0f}",
            ]
        )
    header = ["shape", "steps", "edges", "model", "spec", "DAG", "total", "baseline", "ratio"]
    header += ["µs/step", "µs/(step+edge)", "baseline µs/step"]
    return _table(header, rows)


def growth_rows(graphs: list[Graph], builds: dict[str, BuildTimes]) -> list[tuple[str, str, float]]:
    """``(shape, phase, exponent)`` between the two largest sizes of each shape."""
    rows = []
    for shape in dict.fromkeys(g.shape for g in graphs):
        small, large = sorted((g for g in graphs if g.shape == shape), key=lambda g: g.size)[-2:]
        factor = large.size / small.size
        for phase in (*PHASES, "total", "baseline"):
            before, after = getattr(builds[small.name], phase.lower()), getattr(builds[large.name], phase.lower())
            rows.append((shape, phase, _growth(before, after, factor)))
    return rows


def growth_table(graphs: list[Graph], builds: dict[str, BuildTimes]) -> str:
    """The growth exponent of each phase per shape (1.0 is linear)."""
    rows = growth_rows(graphs, builds)
    phases = list(dict.fromkeys(phase for _, phase, _ in rows))
    table_rows = [
        [shape, *(f"{k:.2f}" for s, _, k in rows if s == shape)] for shape in dict.fromkeys(s for s, _, _ in rows)
    ]
    return _table(["shape", *phases], table_rows)


def parse_table(graphs: list[Graph], parses: dict[tuple[str, str], dict[str, float]]) -> str:
    """Parse times of both files, with and without the package import, against the goal."""
    rows = []
    for g in graphs:
        hand, gen = parses[g.name, "hand"], parses[g.name, "generated"]
        ratio, with_import = gen["parse"] / hand["parse"], (gen["import"] + gen["parse"]) / hand["parse"]
        rows.append(
            [
                g.shape,
                f"{g.size:,}",
                _ms(hand["parse"]),
                _ms(hand["parse_gc"]),
                _ms(gen["parse"]),
                _ms(gen["parse_gc"]),
                f"**{_x(ratio)}**",
                _ms(gen["import"]),
                f"**{_x(with_import)}**",
                " / ".join("met" if r <= PARSE_GOAL else "missed" for r in (ratio, with_import)),
            ]
        )
    header = ["shape", "steps", "hand parse", "(GC)", "generated parse", "(GC)", "ratio", "package import"]
    return _table([*header, "ratio incl. import", f"goal <= {PARSE_GOAL}x (excl. / incl. import)"], rows)


def serialize_table(graphs: list[Graph], parses: dict[tuple[str, str], dict[str, float]]) -> str:
    """Serialisation times and sizes, and the whole per-file cost (check + import + parse + serialise)."""
    rows = []
    for g in graphs:
        hand, gen = parses[g.name, "hand"], parses[g.name, "generated"]
        hand_all = hand["check"] + hand["import"] + hand["parse"] + hand["serialize"]
        gen_all = gen["check"] + gen["import"] + gen["parse"] + gen["serialize"]
        rows.append(
            [
                g.shape,
                f"{g.size:,}",
                _ms(hand["serialize"]),
                _ms(gen["serialize"]),
                f"**{_x(gen['serialize'] / hand['serialize'])}**",
                f"{hand['serialized_bytes'] / 1024:,.0f}",
                f"{gen['serialized_bytes'] / 1024:,.0f}",
                _ms(hand_all),
                _ms(gen_all),
                f"**{_x(gen_all / hand_all)}**",
            ]
        )
    header = ["shape", "steps", "hand serialise", "generated serialise", "ratio", "hand KiB", "generated KiB"]
    return _table([*header, "hand, whole file", "generated, whole file", "ratio"], rows)


def profile_tables(title: str, profile: dict[str, Any]) -> str:
    """The top functions of one profile: by own time, and the package's by cumulative time."""
    parts = [f"**{title}** ({_ms(profile['seconds'])} ms under cProfile)", ""]
    for key, caption in (("tottime", "own time, all code"), ("cumtime", "cumulative time, package functions")):
        rows = [[f"`{r['function']}`", f"{r['calls']:,}", _ms(r["tottime"]), _ms(r["cumtime"])] for r in profile[key]]
        parts += [f"Top by {caption} (ms, under cProfile):", "", _table(["function", "calls", "own", "cum."], rows), ""]
    return "\n".join(parts)


def _profile_sentence(title: str, profile: dict[str, Any]) -> str:
    dominant = profile["dominant"]
    under = (
        f"{dominant['cumtime'] / profile['seconds']:.0%} of the time is under `{dominant['function']}`, and "
        if dominant
        else ""
    )
    top = " and ".join(f"`{r['function']}`" for r in profile["tottime"][:2])
    return f"Profiling the {title}: {under}the most own time goes to {top}."


def summary(
    graphs: list[Graph],
    builds: dict[str, BuildTimes],
    parses: dict[tuple[str, str], dict[str, float]],
    profiles: dict[str, dict[str, Any]],
) -> str:
    """A few sentences: the worst ratios, the superlinear phases, what the profiles point at."""
    build_ratio = {g.name: builds[g.name].total / builds[g.name].baseline for g in graphs}
    parse_ratio = {g.name: parses[g.name, "generated"]["parse"] / parses[g.name, "hand"]["parse"] for g in graphs}
    with_import = {
        g.name: (parses[g.name, "generated"]["import"] + parses[g.name, "generated"]["parse"])
        / parses[g.name, "hand"]["parse"]
        for g in graphs
    }
    worst_build, worst_parse = max(build_ratio, key=build_ratio.get), max(parse_ratio, key=parse_ratio.get)
    growth = growth_rows(graphs, builds)
    steep = [f"{phase} on {shape} (n^{k:.2f})" for shape, phase, k in growth if k > SUPERLINEAR and phase in PHASES]
    baseline = [k for _, phase, k in growth if phase == "baseline"]
    imports = [parses[g.name, "generated"]["import"] for g in graphs]
    sentences = [
        f"The worst build + translate ratio is {worst_build} at {_x(build_ratio[worst_build])} (best "
        f"{_x(min(build_ratio.values()))}); between the two largest sizes, the package phases that grow faster "
        f"than n^{SUPERLINEAR} are {', '.join(steep) or 'none'}, while the baseline itself grows as "
        f"n^{min(baseline):.2f} to n^{max(baseline):.2f}.",
        f"Parsing the generated file is within {PARSE_GOAL}x of the hand-written one in "
        f"{sum(r <= PARSE_GOAL for r in parse_ratio.values())} of {len(graphs)} cases without the package "
        f"import (worst {worst_parse} at {_x(parse_ratio[worst_parse])}) and in "
        f"{sum(r <= PARSE_GOAL for r in with_import.values())} with it: every parse is a fresh fork that "
        f"imports the package again, a fixed {_ms(statistics.median(imports))} ms.",
        *(_profile_sentence(title, profile) for title, profile in profiles.items()),
    ]
    return " ".join(sentences)


def runs_table(runs: dict[str, Any]) -> str:
    """First and fully reused pipeline runs against the same chain of ``BashOperator`` s."""
    m, steps = runs["medians"], runs["steps"]
    rows = [
        ["hand-written DAG of BashOperators (baseline)", f"{m['bash']:.2f}", "1.00x", "-"],
        [
            "pipeline, first run (every step runs)",
            f"{m['first']:.2f}",
            _x(m["first"] / m["bash"]),
            f"{(m['first'] - m['bash']) / steps * 1000:.0f}",
        ],
        [
            "pipeline, second run (every step reused)",
            f"{m['reused']:.2f}",
            _x(m["reused"] / m["bash"]),
            f"{(m['reused'] - m['bash']) / steps * 1000:.0f}",
        ],
    ]
    note = (
        f"\n\nEach the median of {runs['repeats']} runs with `DAG.test()` in one warmed-up process; a pipeline run "
        "is the whole `Experiment.submit` (snapshot check, DAG file, run). Reused run / first run: "
        f"**{_x(m['reused'] / m['first'])}**."
    )
    return _table(["run", "time", "ratio", "overhead per step vs baseline (ms)"], rows) + note


def render(
    *,
    graphs: list[Graph],
    builds: dict[str, BuildTimes],
    parses: dict[tuple[str, str], dict[str, float]],
    runs: dict[str, Any],
    profiles: dict[str, dict[str, Any]],
    command: str,
    runtime: float,
    build_repeats: dict[int, int],
    parse_repeats: dict[int, int],
    profile_size: int,
) -> str:
    """The whole ``RESULTS.md``."""
    info = machine()
    sections = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`{command}`) on {datetime.date.today().isoformat()} in {runtime:.0f} s. "
        "Do not edit by hand: run the benchmark again.",
        "",
        "## Machine",
        "",
        _table(["", ""], [[key, value] for key, value in info.items()]),
        "",
        "## Method",
        "",
        METHOD.format(
            build_repeats=_per_size(build_repeats), parse_repeats=_per_size(parse_repeats), profile_size=profile_size
        ),
        "",
        "## 1. Build + translate (ms)",
        "",
        build_table(graphs, builds),
        "",
        "Growth exponent k of each phase between the two largest sizes (time ~ n^k; 1.00 is linear):",
        "",
        growth_table(graphs, builds),
        "",
        "## 2. DAG-file parse (ms)",
        "",
        parse_table(graphs, parses),
        "",
        "## 3. Serialisation, and the whole per-file cost (ms)",
        "",
        "*Whole file* = stability check + package import (generated only) + parse + serialise.",
        "",
        serialize_table(graphs, parses),
        "",
        f"## 4. Runs through Airflow: a {runs['steps']}-step chain of no-op scripts (s)",
        "",
        runs_table(runs),
        "",
        "## Profiles of the worst cases",
        "",
        *(profile_tables(title, profile) for title, profile in profiles.items()),
        "## Summary",
        "",
        summary(graphs, builds, parses, profiles),
        "",
    ]
    return "\n".join(sections)
