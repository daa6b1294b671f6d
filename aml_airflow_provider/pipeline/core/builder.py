"""Steps, intermediate data and ports: ``PipelineStep``, ``PipelineData``, ``InputPortBinding``, ``StepSequence``."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import (
    check_compute_path,
    check_port_name,
    check_step_name,
    data_env_name,
    parameter_env_name,
)
from aml_airflow_provider.data.data_reference import DataReference, _check_datastore
from aml_airflow_provider.data.datapath import DataPathComputeBinding
from aml_airflow_provider.data.sql_data_reference import SqlDataReference
from aml_airflow_provider.exceptions import (
    InvalidNameError,
    PipelineParameterError,
    StepDefinitionError,
    UserErrorException,
)
from aml_airflow_provider.pipeline.core.graph import PipelineParameter, PortDataReference
from aml_airflow_provider.spec import InputSpec, OutputSpec, StepSpec

if TYPE_CHECKING:
    from pathlib import Path

    from aml_airflow_provider.core.datastore import Datastore

_DATA_TOKEN = re.compile(r"\$\{?AZUREML_DATAREFERENCE_(\w+)\}?")


class PipelineData:
    """Data one step produces and later steps consume; each run writes it to a fresh path.

    :param name: the data's name (letters, digits, underscores)
    :param datastore: where it is written; default: the pipeline's ``default_datastore``, then the
        workspace's default datastore
    :param output_name: the producing step's output port name (default: ``name``)
    :param output_mode: ``mount`` (the script gets a path to write to) or ``upload`` (the script writes
        ``output_path_on_compute``, uploaded when it finishes)
    :param output_path_on_compute: for ``upload``: a path relative to the step's working directory
    :param output_overwrite: accepted for v1 compatibility; every run writes a fresh path
    :param data_type: accepted for v1 compatibility
    :param is_directory: v1's hint that the data is a folder
    :param pipeline_output_name: accepted for v1 compatibility
    :param training_output: accepted for v1 compatibility
    """

    def __init__(
        self,
        name: str,
        datastore: Datastore | None = None,
        output_name: str | None = None,
        output_mode: str = "mount",
        output_path_on_compute: str | None = None,
        output_overwrite: bool | None = None,
        data_type: str | None = None,
        is_directory: bool | None = None,
        pipeline_output_name: str | None = None,
        training_output: Any = None,
    ) -> None:
        self._name = check_port_name(name, "PipelineData name")
        self.datastore = _check_datastore(datastore, f"PipelineData '{name}'") if datastore is not None else None
        self._output_name = check_port_name(output_name or name, f"output_name of PipelineData '{name}'")
        if output_mode not in ("mount", "upload"):
            raise UserErrorException(f"PipelineData '{name}': output_mode {output_mode!r} must be 'mount' or 'upload'.")
        if output_mode == "upload" and not output_path_on_compute:
            raise UserErrorException(
                f"PipelineData '{name}': output_mode='upload' needs output_path_on_compute (the folder or "
                "file the script writes, relative to its working directory)."
            )
        self._output_mode = output_mode
        self._output_path_on_compute = check_compute_path(
            output_path_on_compute, f"output_path_on_compute of PipelineData '{name}'"
        )
        self._output_overwrite = output_overwrite
        self._data_type = data_type
        self._is_directory = bool(is_directory)
        self._pipeline_output_name = pipeline_output_name
        self._producer: PipelineStep | None = None

    name = property(lambda self: self._name)
    output_name = property(lambda self: self._output_name)
    output_mode = property(lambda self: self._output_mode)
    output_path_on_compute = property(lambda self: self._output_path_on_compute)
    is_directory = property(lambda self: self._is_directory)

    @property
    def producer(self) -> PipelineStep | None:
        """The step that lists this data in its outputs."""
        return self._producer

    def _check_producer(self, step: PipelineStep) -> None:
        if self._producer is not None and self._producer is not step:
            raise StepDefinitionError(
                f"Step output '{self._name}' can not be used as an output for step '{step.name}', as it is "
                f"already an output of step '{self._producer.name}'. Give each step its own PipelineData."
            )

    def _set_producer(self, step: PipelineStep) -> None:
        self._check_producer(step)
        self._producer = step

    def as_input(self, input_name: str | None = None) -> InputPortBinding:
        return InputPortBinding(self, bind_mode="mount", input_name=input_name)

    def as_mount(self, input_name: str | None = None) -> InputPortBinding:
        return InputPortBinding(self, bind_mode="mount", input_name=input_name)

    def as_download(
        self, input_name: str | None = None, path_on_compute: str | None = None, overwrite: bool | None = None
    ) -> InputPortBinding:
        return InputPortBinding(
            self,
            bind_mode="download",
            path_on_compute=path_on_compute,
            overwrite=overwrite,
            input_name=input_name,
        )

    def get_env_variable_name(self) -> str:
        return data_env_name(self._name)

    def __str__(self) -> str:
        return "$" + self.get_env_variable_name()

    def __repr__(self) -> str:
        return f"PipelineData(name={self._name!r}, output_name={self._output_name!r})"


class InputPortBinding:
    """How a step consumes a ``PipelineData``, ``DataReference`` or ``PortDataReference``.

    :param bind_object: the data
    :param bind_mode: ``mount`` or ``download``
    :param path_on_compute: for ``download``: where, relative to the working directory
    :param overwrite: for ``download``: replace existing files
    :param input_name: the input port's name (default: the data's name)
    """

    def __init__(
        self,
        bind_object: PipelineData | DataReference | PortDataReference,
        bind_mode: str = "mount",
        path_on_compute: str | None = None,
        overwrite: bool | None = None,
        input_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(bind_object, PipelineData | DataReference | PortDataReference):
            raise UserErrorException(
                f"InputPortBinding: cannot bind a {type(bind_object).__name__}; give a PipelineData, "
                "DataReference or PortDataReference."
            )
        if bind_mode not in ("mount", "download"):
            raise UserErrorException(
                f"InputPortBinding for '{bind_object.name}': mode {bind_mode!r} must be 'mount' or 'download'."
            )
        self.bind_object = bind_object
        self.bind_mode = bind_mode
        self.overwrite = bool(overwrite)
        self.name = check_port_name(input_name or bind_object.name, "input_name")
        self.path_on_compute = check_compute_path(path_on_compute, f"path_on_compute of input '{self.name}'")

    def __str__(self) -> str:
        return "$" + data_env_name(self.name)

    def __repr__(self) -> str:
        return f"InputPortBinding(name={self.name!r}, bind_object={self.bind_object!r}, mode={self.bind_mode!r})"


@dataclass
class _Input:
    """A normalised input port of a step."""

    name: str
    source: PipelineData | DataReference | PortDataReference | PipelineParameter
    mode: str
    path_on_compute: str | None
    overwrite: bool


def _normalise_input(item: object, step_name: str) -> _Input:
    if isinstance(item, PipelineData):
        return _Input(item.name, item, "mount", None, False)
    if isinstance(item, InputPortBinding):
        return _Input(item.name, item.bind_object, item.bind_mode, item.path_on_compute, item.overwrite)
    if isinstance(item, DataReference):
        return _Input(item.name, item, item.mode, item.path_on_compute, item.overwrite)
    if isinstance(item, PortDataReference):
        return _Input(item.name, item, "mount", None, False)
    param, binding = _datapath_parameter(item)
    if param is not None:
        check_port_name(param.name, f"name of DataPath parameter '{param.name}' used as an input")
        return _Input(param.name, param, binding.mode, binding.path_on_compute, binding.overwrite)
    if isinstance(item, SqlDataReference):
        raise StepDefinitionError(
            f"Step '{step_name}': a SqlDataReference can only be used by a DataTransferStep (copy the rows to a "
            "blob or folder datastore first)."
        )
    raise StepDefinitionError(
        f"Step '{step_name}': unexpected input type {type(item).__name__}; give a DataReference, PipelineData, "
        "InputPortBinding, PortDataReference or a (PipelineParameter, DataPathComputeBinding) tuple."
    )


def _datapath_parameter(item: object) -> tuple[PipelineParameter | None, DataPathComputeBinding]:
    """Recognise v1's ``(PipelineParameter(DataPath), DataPathComputeBinding)`` tuple (or a bare parameter)."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], PipelineParameter):
        param, binding = item
        if not isinstance(binding, DataPathComputeBinding):
            raise StepDefinitionError(
                f"Pipeline parameter '{param.name}': the second element of the tuple must be a "
                f"DataPathComputeBinding, not {type(binding).__name__}."
            )
    elif isinstance(item, PipelineParameter):
        param, binding = item, DataPathComputeBinding()
    else:
        return None, DataPathComputeBinding()
    if param.type != "datapath":
        raise StepDefinitionError(
            f"Pipeline parameter '{param.name}' has a {param.type} default; only DataPath parameters can be "
            "step inputs."
        )
    return param, binding


class StepContext(ABC):
    """What a step needs from its pipeline to describe itself as a spec."""

    @abstractmethod
    def task_id(self, step: PipelineStep) -> str: ...

    @abstractmethod
    def output_datastore(self, data: PipelineData) -> str: ...

    @abstractmethod
    def source_directory(self, step: PipelineStep) -> Path: ...

    @abstractmethod
    def run_after(self, step: PipelineStep) -> tuple[str, ...]:
        """Task ids the step runs after without a data dependency (``run_after`` and ``StepSequence``)."""


class PipelineStep(ABC):
    """Base class of all steps: a name, input and output ports, and ordering.

    :param name: the step's name (any text; unique in a pipeline)
    :param inputs: data the step reads
    :param outputs: ``PipelineData`` the step writes
    :param arguments: command-line arguments (data objects become local paths)
    :param fix_port_name_collisions: rename an input named like an output to ``INPUT_<name>`` (as v1)
    :param resource_inputs: accepted for v1 compatibility
    :param params: v1 ``params``: ``{key: value or PipelineParameter}``, each set for the step as
        ``AML_PARAMETER_<key>`` (steps without such a contract pass nothing)
    :param named_arguments: ``{name: value}`` resolved like ``arguments`` (a notebook's widgets)

    Subclasses check their own arguments before calling this constructor: it claims the outputs
    (making this step their producer) last, so a step that fails to build claims nothing.
    """

    #: The operator-registry key and its semantics version (part of reuse fingerprints).
    kind = "PipelineStep"
    kind_version = 1
    #: Name of the compute target the step runs on (``None``: the Airflow worker).
    _compute: str | None = None

    def __init__(
        self,
        name: str,
        inputs: Iterable[Any] | None,
        outputs: Iterable[Any] | None,
        arguments: Iterable[Any] | None = None,
        fix_port_name_collisions: bool = False,
        resource_inputs: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        named_arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = check_step_name(name)
        self._outputs: list[PipelineData] = []
        for out in outputs or ():
            if not isinstance(out, PipelineData):
                raise StepDefinitionError(f"Step '{name}': outputs must be PipelineData, not {type(out).__name__}.")
            out._check_producer(self)
            self._outputs.append(out)
        self._inputs = [_normalise_input(item, name) for item in inputs or ()]
        self._check_port_names(fix_port_name_collisions)
        self._run_after: list[PipelineStep] = []
        self._parameters: dict[str, PipelineParameter] = {}
        for port in self._inputs:
            if isinstance(port.source, PipelineParameter):
                self._use_parameter(port.source)
        self._arguments = self._resolve_arguments(list(arguments or ()))
        self._named_arguments = self._resolve_named_arguments(named_arguments)
        self._params = self._resolve_params(params)
        # Last: everything that can fail has been checked.
        for out in self._outputs:
            out._set_producer(self)

    # -- ports ------------------------------------------------------------------------------------
    def _check_port_names(self, fix_collisions: bool) -> None:
        seen: set[str] = set()
        for out in self._outputs:
            if out.output_name in seen:
                raise InvalidNameError(f"Step '{self._name}': two outputs are named '{out.output_name}'.")
            seen.add(out.output_name)
        inputs_seen: set[str] = set()
        for port in self._inputs:
            if port.name in seen:
                if not fix_collisions:
                    raise InvalidNameError(
                        f"Step '{self._name}': input '{port.name}' has the name of an output; rename one of them."
                    )
                port.name = check_port_name(f"INPUT_{port.name}")
            if port.name in inputs_seen:
                raise InvalidNameError(
                    f"Step '{self._name}': two inputs are named '{port.name}'; give one a different name "
                    "(for example with .as_input(input_name=...))."
                )
            inputs_seen.add(port.name)

    def _use_parameter(self, param: PipelineParameter) -> None:
        known = self._parameters.get(param.name)
        if known is not None and known._key() != param._key():
            raise PipelineParameterError(
                f"Step '{self._name}': pipeline parameter '{param.name}' is used with two different defaults "
                f"({known.default_value!r} and {param.default_value!r})."
            )
        self._parameters[param.name] = param

    def _port_for(self, item: object) -> str | None:
        """The port name that a data object in ``arguments`` refers to, or ``None`` if it is not a port."""
        if isinstance(item, PipelineData):
            for out in self._outputs:
                if out is item:
                    return out.output_name
            for port in self._inputs:
                if port.source is item:
                    return port.name
            raise StepDefinitionError(
                f"Step '{self._name}': PipelineData '{item.name}' appears in arguments but is in neither the "
                "inputs nor the outputs list; add it to one of them."
            )
        if isinstance(item, InputPortBinding):
            for port in self._inputs:
                # The port may have been renamed INPUT_<name>; the data it binds identifies it.
                if port.source is item.bind_object and port.name in (item.name, f"INPUT_{item.name}"):
                    return port.name
            raise StepDefinitionError(
                f"Step '{self._name}': Input {item.name} appears in arguments list but is not in the input list."
            )
        if isinstance(item, DataReference | PortDataReference):
            for port in self._inputs:
                # as_download()/as_mount() clones keep the reference's name, so match on that (as v1).
                if isinstance(port.source, type(item)) and port.source.name == item.name:
                    return port.name
            raise StepDefinitionError(
                f"Step '{self._name}': Input {item.name} appears in arguments list but is not in the input list."
            )
        param, _ = _datapath_parameter(item) if isinstance(item, tuple) else (None, None)
        if param is not None:
            for port in self._inputs:
                if port.source is param:
                    return port.name
            raise StepDefinitionError(
                f"Step '{self._name}': DataPath parameter '{param.name}' appears in arguments but is not in the "
                "input list; put the same tuple in inputs."
            )
        return None

    def _resolve_arguments(self, arguments: list[Any]) -> list[str]:
        """v1's contract: data objects become ``$AZUREML_DATAREFERENCE_<port>``, parameters ``$AML_PARAMETER_<x>``."""
        resolved: list[str] = []
        port_names = {p.name for p in self._inputs} | {o.output_name for o in self._outputs}
        for item in arguments:
            if isinstance(item, PipelineParameter):
                if item.type == "datapath":
                    resolved.append("$" + data_env_name(self._port_for((item, DataPathComputeBinding())) or ""))
                else:
                    self._use_parameter(item)
                    resolved.append("$" + parameter_env_name(item.name))
                continue
            port = self._port_for(item)
            if port is not None:
                resolved.append("$" + data_env_name(port))
                continue
            if isinstance(item, bool | int | float | str):
                text = str(item)
            elif item is None:
                raise StepDefinitionError(f"Step '{self._name}': an argument is None; remove it or give a value.")
            else:
                text = str(item)
            for token in _DATA_TOKEN.findall(text):
                if token not in port_names:
                    raise StepDefinitionError(
                        f"Step '{self._name}': argument {text!r} refers to AZUREML_DATAREFERENCE_{token}, but the "
                        "step has no input or output port of that name."
                    )
            if "\x00" in text:
                raise StepDefinitionError(f"Step '{self._name}': argument {text!r} contains a NUL byte.")
            resolved.append(text)
        return resolved

    def _resolve_named_arguments(self, named: Mapping[str, Any] | None) -> dict[str, str]:
        """Keyed arguments (notebook widgets): values resolved as in ``arguments``."""
        out: dict[str, str] = {}
        for key, value in (named or {}).items():
            if not isinstance(key, str) or not key.strip() or "\x00" in key:
                raise InvalidNameError(f"Step '{self._name}': parameter name {key!r} must be a non-empty string.")
            out[key] = self._resolve_arguments([value])[0]
        return out

    def _resolve_params(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        """v1 ``params``: every entry becomes the environment variable ``AML_PARAMETER_<key>``."""
        out: dict[str, str] = {}
        for key, value in (params or {}).items():
            if not isinstance(key, str) or not re.fullmatch(r"\w+", key, flags=re.ASCII):
                raise InvalidNameError(
                    f"Step '{self._name}': params key {key!r} must be letters, digits and underscores "
                    "(it becomes the environment variable AML_PARAMETER_<key>)."
                )
            if isinstance(value, PipelineParameter):
                self._use_parameter(value)
                out[key] = "$" + parameter_env_name(value.name)
            else:
                out[key] = str(value)
                if "\x00" in out[key]:
                    # An environment variable cannot hold one: the step would fail on the worker.
                    raise StepDefinitionError(f"Step '{self._name}': params['{key}'] {out[key]!r} contains a NUL byte.")
        return out

    # -- ordering ---------------------------------------------------------------------------------
    def run_after(self, step: PipelineStep) -> None:
        """Run this step after ``step`` even though no data flows between them."""
        if not isinstance(step, PipelineStep):
            raise UserErrorException(f"Step '{self._name}': run_after needs a step, not {type(step).__name__}.")
        if step is self:
            raise UserErrorException(f"Step '{self._name}' cannot run after itself.")
        if step not in self._run_after:
            self._run_after.append(step)

    @property
    def run_after_steps(self) -> list[PipelineStep]:
        return list(self._run_after)

    # -- properties -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def inputs(self) -> list[Any]:
        return [p.source for p in self._inputs]

    @property
    def outputs(self) -> list[PipelineData]:
        return list(self._outputs)

    @property
    def arguments(self) -> list[str]:
        return list(self._arguments)

    @property
    def params(self) -> dict[str, str]:
        """v1 ``params`` as the step's environment values (``$AML_PARAMETER_<name>`` for parameters)."""
        return dict(self._params)

    @property
    def parameters(self) -> dict[str, PipelineParameter]:
        """Pipeline parameters this step uses, by name."""
        return dict(self._parameters)

    def _producers(self) -> list[PipelineStep | None]:
        return [p.source.producer for p in self._inputs if isinstance(p.source, PipelineData)]

    def _datastores(self) -> list[Datastore]:
        stores = [p.source.datastore for p in self._inputs if isinstance(p.source, DataReference | PortDataReference)]
        stores += [p.source.default_value.datastore for p in self._inputs if isinstance(p.source, PipelineParameter)]
        return stores + [o.datastore for o in self._outputs if o.datastore is not None]

    def _check(self, ctx: StepContext) -> list[str]:
        """Problems only visible once the pipeline is known (override to add some)."""
        return []

    # -- spec -------------------------------------------------------------------------------------
    def _input_specs(self, ctx: StepContext) -> tuple[InputSpec, ...]:
        specs = []
        for port in self._inputs:
            common = dict(
                name=port.name, mode=port.mode, path_on_compute=port.path_on_compute, overwrite=port.overwrite
            )
            src = port.source
            if isinstance(src, PipelineData):
                assert src.producer is not None  # the pipeline checked this
                specs.append(InputSpec(step=ctx.task_id(src.producer), output=src.output_name, **common))
            elif isinstance(src, PipelineParameter):
                specs.append(InputSpec(parameter=src.name, **common))
            else:
                specs.append(InputSpec(uri=src.uri, **common))
        return tuple(specs)

    def _output_specs(self, ctx: StepContext) -> tuple[OutputSpec, ...]:
        return tuple(
            OutputSpec(
                name=o.output_name,
                datastore=ctx.output_datastore(o),
                mode=o.output_mode,
                path_on_compute=o.output_path_on_compute,
                overwrite=bool(o._output_overwrite),
                is_directory=o.is_directory,
            )
            for o in self._outputs
        )

    def _base_spec(
        self,
        ctx: StepContext,
        *,
        config: Mapping[str, Any],
        compute: str | None,
        allow_reuse: bool,
        version: str | None,
    ) -> StepSpec:
        return StepSpec(
            name=self._name,
            task_id=ctx.task_id(self),
            kind=self.kind,
            kind_version=self.kind_version,
            config=dict(config),
            inputs=self._input_specs(ctx),
            outputs=self._output_specs(ctx),
            run_after=ctx.run_after(self),
            parameters=tuple(sorted(self._parameters)),
            compute=compute,
            allow_reuse=allow_reuse,
            version=version,
        )

    @abstractmethod
    def _to_spec(self, ctx: StepContext) -> StepSpec:
        """Describe this step as a :class:`StepSpec`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"


class StepSequence:
    """Steps in order: each element (a step or a list of steps) runs after the whole previous element.

    :param steps: the elements
    """

    def __init__(self, steps: Iterable[Any] | None = None) -> None:
        self._elements = list(steps or ())
        for element in self._elements:
            items = element if isinstance(element, list | tuple) else [element]
            for item in items:
                if not isinstance(item, PipelineStep | StepSequence | list | tuple):
                    raise UserErrorException(
                        f"StepSequence: elements must be steps or lists of steps, not {type(item).__name__}."
                    )

    @property
    def elements(self) -> list[Any]:
        return list(self._elements)
