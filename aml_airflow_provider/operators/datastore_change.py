"""``DatastoreChangeOperator``: the first task of a datastore schedule — has anything changed since last time?"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from aml_airflow_provider.uris import format_uri

if TYPE_CHECKING:
    from airflow.sdk import Context

    from aml_airflow_provider.storage.base import DatastoreBackend

#: Where a schedule's last view of its folder is kept (on the state datastore).
STATE_ROOT = "azureml/schedules"


class DatastoreChangeOperator(BaseOperator):
    """Compare the files under ``path_on_datastore`` with the last look; return the changed location.

    With no change the task is skipped (so the run it guards is not started). One batch of changes
    gives one run: its value is the URI of the changed file if only one changed, else of the watched
    folder. The first look records what is there and starts nothing.

    :param workspace: the workspace
    :param datastore: the watched datastore
    :param path_on_datastore: the watched folder or file ('' for the whole datastore) (templated)
    :param state_key: names this watcher's state (a schedule id)
    :param state_datastore: where the state is kept
    """

    template_fields: Sequence[str] = ("path_on_datastore",)

    def __init__(
        self,
        *,
        workspace: str,
        datastore: str,
        path_on_datastore: str,
        state_key: str,
        state_datastore: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workspace = workspace
        self.datastore = datastore
        self.path_on_datastore = path_on_datastore
        self.state_key = state_key
        self.state_datastore = state_datastore

    def _backend(self, name: str) -> DatastoreBackend:
        from aml_airflow_provider.hooks.datastore import AmlDatastoreHook

        return AmlDatastoreHook.for_datastore(self.workspace, name).backend

    def execute(self, context: Context) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        watched = self._backend(self.datastore)
        store = self._backend(self.state_datastore)
        # Content, where the store keeps a hash: uploading the same bytes again is not a change.
        now = {f.path: f"{f.content_md5 or f.etag}:{f.size}" for f in watched.list_files(self.path_on_datastore)}
        state_path = f"{STATE_ROOT}/{self.state_key}.json"
        with tempfile.TemporaryDirectory(prefix="aml-watch-") as tmp:
            local = Path(tmp) / "state.json"
            first_look = not store.list_files(state_path)
            before = {}
            if not first_look:
                store.download_many([(state_path, local)], overwrite=True)
                before = json.loads(local.read_text(encoding="utf-8"))
            local.write_text(json.dumps(now), encoding="utf-8")
            # Saved before the run is started: a failed trigger must not replay the same batch forever.
            store.upload_many([(local, state_path)], overwrite=True)
        changed = sorted(p for p, tag in now.items() if before.get(p) != tag)
        if first_look or not changed:
            reason = "first look: recorded what is there" if first_look else "nothing changed"
            raise AirflowSkipException(f"No run: {reason} under {watched.describe(self.path_on_datastore)}.")
        self.log.info(
            "%d file(s) changed under %s: %s",
            len(changed),
            watched.describe(self.path_on_datastore),
            ", ".join(changed[:20]),
        )
        return format_uri(self.datastore, changed[0] if len(changed) == 1 else self.path_on_datastore)
