"""``CondaDependencies`` (SDK v1 path): the packages a step's environment asks for."""

from __future__ import annotations

from collections.abc import Iterable


class CondaDependencies:
    """A list of pip and conda packages.

    A step that asks for packages runs in a virtualenv built for them on the worker, layered on the
    worker's own packages; conda packages are installed with pip under the same name
    (``numpy=1.26`` -> ``numpy==1.26``), and ``python``/``pip`` are the worker's.
    """

    def __init__(self, conda_dependencies_file_path: str | None = None, _underlying_structure=None) -> None:
        self._pip: list[str] = []
        self._conda: list[str] = []
        self.python_version: str | None = None

    @staticmethod
    def create(
        pip_indexurl: str | None = None,
        pip_packages: Iterable[str] | None = None,
        conda_packages: Iterable[str] | None = None,
        python_version: str | None = None,
        pin_sdk_version: bool = True,
    ) -> CondaDependencies:
        deps = CondaDependencies()
        deps._pip = list(pip_packages or [])
        deps._conda = list(conda_packages or [])
        deps.python_version = python_version
        return deps

    def add_pip_package(self, pip_package: str) -> None:
        if pip_package not in self._pip:
            self._pip.append(pip_package)

    def add_conda_package(self, conda_package: str) -> None:
        if conda_package not in self._conda:
            self._conda.append(conda_package)

    @property
    def pip_packages(self) -> list[str]:
        return list(self._pip)

    @property
    def conda_packages(self) -> list[str]:
        return list(self._conda)

    def to_dict(self) -> dict[str, object]:
        return {"pip": sorted(self._pip), "conda": sorted(self._conda), "python_version": self.python_version}
