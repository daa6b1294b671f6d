"""Databricks cluster and library settings (SDK v1 ``azureml.core.databricks``), as Jobs API payload pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aml_airflow_provider.exceptions import StepDefinitionError

#: v1's defaults for a new job cluster.
DEFAULT_SPARK_VERSION = "10.4.x-scala2.12"
DEFAULT_NODE_TYPE = "Standard_D3_v2"
DEFAULT_SPARK_ENV = {"PYSPARK_PYTHON": "/databricks/python3/bin/python3"}


@dataclass(frozen=True)
class MavenLibrary:
    """A Maven package: ``coordinates`` like ``org.jsoup:jsoup:1.7.2``."""

    coordinates: str
    repo: str = ""
    exclusions: tuple[str, ...] = ()

    def to_api(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"coordinates": self.coordinates}
        if self.repo:
            spec["repo"] = self.repo
        if self.exclusions:
            spec["exclusions"] = list(self.exclusions)
        return {"maven": spec}


@dataclass(frozen=True)
class PyPiLibrary:
    """A PyPI package (``package`` may carry a version: ``pandas==2.2.2``)."""

    package: str
    repo: str = ""

    def to_api(self) -> dict[str, Any]:
        return {"pypi": {"package": self.package, **({"repo": self.repo} if self.repo else {})}}


@dataclass(frozen=True)
class RCranLibrary:
    """A CRAN package."""

    package: str
    repo: str = ""

    def to_api(self) -> dict[str, Any]:
        return {"cran": {"package": self.package, **({"repo": self.repo} if self.repo else {})}}


@dataclass(frozen=True)
class JarLibrary:
    """A JAR on DBFS or cloud storage (``dbfs:/...``)."""

    library: str

    def to_api(self) -> dict[str, Any]:
        return {"jar": self.library}


@dataclass(frozen=True)
class EggLibrary:
    """An egg on DBFS or cloud storage (``dbfs:/...``)."""

    library: str

    def to_api(self) -> dict[str, Any]:
        return {"egg": self.library}


LIBRARY_KINDS: dict[str, type] = {
    "maven_libraries": MavenLibrary,
    "pypi_libraries": PyPiLibrary,
    "egg_libraries": EggLibrary,
    "jar_libraries": JarLibrary,
    "rcran_libraries": RCranLibrary,
}


def library_payload(kind: str, items: Any, where: str) -> list[dict[str, Any]]:
    """The Jobs API ``libraries`` entries of one v1 argument (``pypi_libraries=[PyPiLibrary(...)]``, ...)."""
    cls = LIBRARY_KINDS[kind]
    if not isinstance(items, list | tuple):
        raise StepDefinitionError(f"{where}: {kind} must be a list of {cls.__name__}, not {type(items).__name__}.")
    payload = []
    for item in items:
        if not isinstance(item, cls):
            raise StepDefinitionError(f"{where}: {kind} holds a {type(item).__name__}; give {cls.__name__} objects.")
        payload.append(item.to_api())
    return payload


@dataclass
class DatabricksCluster:
    """A new job cluster, for ``runconfig.environment.databricks.cluster`` (v1)."""

    spark_version: str = DEFAULT_SPARK_VERSION
    node_type: str | None = None
    instance_pool_id: str | None = None
    num_workers: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    spark_env_variables: dict[str, str] | None = None
    spark_conf: dict[str, str] | None = None
    init_scripts: list[str] | None = None
    cluster_log_dbfs_path: str | None = None


@dataclass
class DatabricksSection:
    """``environment.databricks``: a cluster and libraries a DatabricksStep may take instead of its arguments."""

    cluster: DatabricksCluster | None = None
    maven_libraries: list[MavenLibrary] = field(default_factory=list)
    pypi_libraries: list[PyPiLibrary] = field(default_factory=list)
    egg_libraries: list[EggLibrary] = field(default_factory=list)
    jar_libraries: list[JarLibrary] = field(default_factory=list)
    rcran_libraries: list[RCranLibrary] = field(default_factory=list)


__all__ = [
    "DatabricksCluster",
    "DatabricksSection",
    "EggLibrary",
    "JarLibrary",
    "MavenLibrary",
    "PyPiLibrary",
    "RCranLibrary",
]
