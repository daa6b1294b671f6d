"""``SqlDataReference``: a query, table or stored procedure on a SQL datastore (SDK v1 path).

Only a ``DataTransferStep`` reads or writes one: it copies the rows to or from a file datastore.
"""

from __future__ import annotations

from typing import Any

from aml_airflow_provider._names import check_port_name
from aml_airflow_provider.exceptions import UserErrorException


class SqlDataReference:
    """A SQL source or destination.

    :param datastore: a SQL datastore
    :param data_reference_name: the port name
    :param sql_query: a query to read
    :param sql_table: a table to read or append to
    :param sql_stored_procedure: a stored procedure to call
    :param sql_stored_procedure_params: its parameters
    """

    def __init__(
        self,
        datastore: Any,
        data_reference_name: str | None = None,
        sql_query: str | None = None,
        sql_table: str | None = None,
        sql_stored_procedure: str | None = None,
        sql_stored_procedure_params: list[Any] | None = None,
    ) -> None:
        given = [x for x in (sql_query, sql_table, sql_stored_procedure) if x]
        if len(given) != 1:
            raise UserErrorException(
                "SqlDataReference needs exactly one of sql_query, sql_table or sql_stored_procedure."
            )
        self.datastore = datastore
        self.data_reference_name = check_port_name(data_reference_name or getattr(datastore, "name", "sql"))
        self.sql_query = sql_query
        self.sql_table = sql_table
        self.sql_stored_procedure = sql_stored_procedure
        self.sql_stored_procedure_params = list(sql_stored_procedure_params or [])
