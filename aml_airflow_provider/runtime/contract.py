"""SDK v1's contract with a step script: environment variables and ``$VARIABLE`` expansion in arguments."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from aml_airflow_provider.exceptions import UserErrorException

DATA_TOKEN = "AZUREML_DATAREFERENCE_"
PARAMETER_TOKEN = "AML_PARAMETER_"
_TOKEN = re.compile(r"\$(\{)?((?:AZUREML_DATAREFERENCE|AML_PARAMETER)_\w+)(?(1)\})")
#: Worker variables a user script must not inherit: Airflow's configuration holds database URLs,
#: connections and variables with credentials.
_PRIVATE_ENV = re.compile(r"^(AIRFLOW__|AIRFLOW_CONN_|AIRFLOW_VAR_|_AIRFLOW)")


def expand(text: str, env: Mapping[str, str], *, where: str, only: str | None = None) -> str:
    """Replace ``$AZUREML_DATAREFERENCE_x`` / ``$AML_PARAMETER_x`` (or ``${...}``) with their values.

    Nothing else is expanded (there is no shell). An unknown name is an error naming ``where``.

    :param only: expand only names with this prefix (:data:`DATA_TOKEN` or :data:`PARAMETER_TOKEN`)
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(2)
        if only and not name.startswith(only):
            return match.group(0)
        if name not in env:
            raise UserErrorException(f"{where}: ${name} is not defined for this step.")
        return env[name]

    return _TOKEN.sub(value, text)


def value_text(value: Any) -> str:
    """How a parameter value appears in the environment and on the command line."""
    return str(value)


def base_environment() -> dict[str, str]:
    """The worker's environment without Airflow's own settings and secrets."""
    return {k: v for k, v in os.environ.items() if not _PRIVATE_ENV.match(k)}
