"""The benchmark's graph shapes, as plain edge lists (no Airflow, no package imports).

Step ``i`` is named ``s<i>`` and writes the data ``d<i>``; an edge ``(u, v)`` means step ``v`` consumes
the output of step ``u``. Every builder in the benchmark starts from the same :class:`Graph`, so the
pipeline, its generated DAG and the hand-written baseline have identical tasks and edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

SHAPES = ("chain", "fanout", "diamond")


@dataclass(frozen=True)
class Graph:
    """A DAG of ``size`` steps and its data edges ``(producer, consumer)``."""

    shape: str
    size: int
    edges: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        """The DAG id: ``<shape>_<size>``."""
        return f"{self.shape}_{self.size}"

    @cached_property
    def upstream(self) -> list[list[int]]:
        """For each step, the steps whose outputs it consumes, in edge order."""
        producers: list[list[int]] = [[] for _ in range(self.size)]
        for u, v in self.edges:
            producers[v].append(u)
        return producers


def _chain(size: int) -> list[tuple[int, int]]:
    return [(i - 1, i) for i in range(1, size)]


def _fanout(size: int) -> list[tuple[int, int]]:
    return [(0, i) for i in range(1, size)]


def _diamond(size: int) -> list[tuple[int, int]]:
    """Layers of width ~sqrt(size); each step reads positions ``p`` and ``p + 1`` of the layer before."""
    width = max(1, round(math.sqrt(size)))
    edges = []
    for i in range(width, size):
        previous_layer = (i // width - 1) * width
        position = i % width
        producers = dict.fromkeys((previous_layer + position, previous_layer + (position + 1) % width))
        edges += [(u, i) for u in producers]
    return edges


_EDGES = {"chain": _chain, "fanout": _fanout, "diamond": _diamond}


def make_graph(shape: str, size: int) -> Graph:
    """The graph of ``shape`` (one of :data:`SHAPES`) with ``size`` steps."""
    return Graph(shape, size, tuple(_EDGES[shape](size)))
