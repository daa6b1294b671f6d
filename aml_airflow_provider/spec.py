"""The pipeline spec: one versioned, JSON-serialisable description of a built pipeline.

The authoring model compiles to a :class:`PipelineSpec`; the translator, published pipelines and
generated DAG files read only the spec. It names datastores and computes but never holds a secret,
and it is deterministic: the same pipeline gives byte-identical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

SPEC_VERSION = 1

#: DAG params every translated DAG has besides the pipeline's own (so pipelines cannot use these names).
REGENERATE_PARAM = "regenerate_outputs"
#: Keys a submission adds to a DAG run's conf besides the parameter values.
TAGS_CONF_KEY = "aml_tags"
EXPERIMENT_CONF_KEY = "aml_experiment"
CONTINUE_CONF_KEY = "aml_continue_on_step_failure"
#: Names the schedule that started a run.
SCHEDULE_CONF_KEY = "aml_schedule"
RESERVED_PARAMETERS = (REGENERATE_PARAM, TAGS_CONF_KEY, EXPERIMENT_CONF_KEY, CONTINUE_CONF_KEY, SCHEDULE_CONF_KEY)

#: Parameter types, with the JSON-schema type each becomes as a DAG ``Param``.
PARAMETER_TYPES = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "string": "string",
    "datapath": "string",
}


@dataclass(frozen=True)
class ParameterSpec:
    """A pipeline parameter.

    :param name: parameter name
    :param type: one of ``int``, ``float``, ``bool``, ``string``, ``datapath``
    :param default: default value; for ``datapath`` an ``azureml://`` URI string
    :param description: shown in the Airflow trigger form
    """

    name: str
    type: str
    default: Any
    description: str | None = None


@dataclass(frozen=True)
class InputSpec:
    """A step input: exactly one of ``uri``, ``step``+``output`` or ``parameter`` says where it comes from.

    :param name: port name; the script sees it as ``AZUREML_DATAREFERENCE_<name>``
    :param uri: a fixed ``azureml://`` location (a ``DataReference``)
    :param step: task id of the producing step (a ``PipelineData``)
    :param output: output name on the producing step
    :param parameter: name of a ``datapath`` pipeline parameter whose value is the location
    :param mode: ``mount``, ``download`` or ``upload`` (a ``DataReference`` written back after the run)
    :param path_on_compute: where the data is placed, relative to the step's working directory
    :param overwrite: for ``download``/``upload``: replace what is already there
    """

    name: str
    uri: str | None = None
    step: str | None = None
    output: str | None = None
    parameter: str | None = None
    mode: str = "mount"
    path_on_compute: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class OutputSpec:
    """A step output (``PipelineData``), written to a fresh per-run path on ``datastore``.

    :param name: output (port) name; also the XCom key that carries its URI
    :param datastore: datastore name
    :param mode: ``mount`` (the script gets a path) or ``upload`` (the script writes ``path_on_compute``)
    :param path_on_compute: for ``upload``, relative to the working directory
    :param overwrite: v1's ``output_overwrite``; outputs always go to a fresh path, so kept for information
    :param is_directory: v1's ``is_directory`` hint
    """

    name: str
    datastore: str
    mode: str = "mount"
    path_on_compute: str | None = None
    overwrite: bool = False
    is_directory: bool = False


def port_dict(port: InputSpec | OutputSpec) -> dict[str, Any]:
    """A port's fields as a plain dict (ports are flat, so no deep copy as in ``dataclasses.asdict``)."""
    return {f.name: getattr(port, f.name) for f in fields(port)}


@dataclass(frozen=True)
class StepSpec:
    """One step: what runs, its ports, and what it must run after.

    :param name: the step's display name (v1 ``name``)
    :param task_id: the unique Airflow task id
    :param kind: step kind, a key of the operator registry (``PythonScriptStep``, ...)
    :param kind_version: version of the kind's semantics (part of reuse fingerprints)
    :param config: kind-specific settings (script name, source directory, arguments, ...)
    :param run_after: task ids this step runs after without a data dependency
    :param parameters: names of the pipeline parameters the step uses
    """

    name: str
    task_id: str
    kind: str
    kind_version: int
    config: Mapping[str, Any]
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    run_after: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()
    compute: str | None = None
    allow_reuse: bool = True
    version: str | None = None

    @property
    def upstream(self) -> tuple[str, ...]:
        """Task ids this step depends on: the producers of its inputs, then ``run_after``."""
        ordered: dict[str, None] = {}
        for port in self.inputs:
            if port.step:
                ordered[port.step] = None
        for task_id in self.run_after:
            ordered[task_id] = None
        return tuple(ordered)


#: Key of :attr:`PipelineSpec.extra` holding ``{compute name: {"pool": ..., "queue": ...}}``: where the
#: tasks of steps on an ``AmlCompute`` go (its Airflow pool and executor queue).
PLACEMENT_KEY = "compute_placement"


@dataclass(frozen=True)
class PipelineSpec:
    """A whole pipeline, steps in a topological order."""

    workspace: str
    default_datastore: str
    steps: tuple[StepSpec, ...]
    parameters: tuple[ParameterSpec, ...] = ()
    description: str | None = None
    continue_on_step_failure: bool = False
    spec_version: int = SPEC_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def step(self, task_id: str) -> StepSpec:
        for step in self.steps:
            if step.task_id == task_id:
                return step
        raise KeyError(task_id)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def to_json(self, *, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=False)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: two specs with one fingerprint run the same work."""
        # Cached (the spec is frozen): every DAG built from the spec shows it in its doc_md.
        return hashlib.sha256(self.to_json(indent=None).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, fingerprint: str | None = None) -> PipelineSpec:
        """The spec ``data`` describes.

        :param data: what :meth:`to_dict` gave
        :param fingerprint: the spec's fingerprint, recorded when ``data`` was written (saves hashing it
            again when a DAG file is parsed)
        """
        version = data.get("spec_version")
        if version != SPEC_VERSION:
            raise ValueError(
                f"Pipeline spec version {version!r} is not supported by this aml_airflow_provider "
                f"(it reads version {SPEC_VERSION}); rebuild the pipeline with this version."
            )
        steps = tuple(
            StepSpec(
                **{
                    **s,
                    "inputs": tuple(InputSpec(**i) for i in s.get("inputs", ())),
                    "outputs": tuple(OutputSpec(**o) for o in s.get("outputs", ())),
                    "run_after": tuple(s.get("run_after", ())),
                    "parameters": tuple(s.get("parameters", ())),
                }
            )
            for s in data["steps"]
        )
        spec = cls(
            **{
                **data,
                "steps": steps,
                "parameters": tuple(ParameterSpec(**p) for p in data.get("parameters", ())),
            }
        )
        if fingerprint is not None:
            spec.__dict__["fingerprint"] = fingerprint  # the cached_property's slot
        return spec

    @classmethod
    def from_json(cls, text: str) -> PipelineSpec:
        return cls.from_dict(json.loads(text))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """``value`` as ``dataclasses.asdict`` gives it, without deep-copying every leaf (a spec's leaves are
    JSON scalars): asdict was most of the time spent building a translated DAG's ``doc_md``."""
    cls = type(value)
    if hasattr(cls, "__dataclass_fields__"):
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
        return {name: _plain(getattr(value, name)) for name in names}
    if cls is list or cls is tuple:
        return cls(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
