"""The *Pipelines* page: published pipelines and endpoints, their parameters, URLs and recent runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from aml_airflow_provider.dagfile import DagDocument

RECENT_RUNS = 5


def _base_url() -> str:
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def _recent_runs(dag_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    runs: dict[str, list[dict[str, str]]] = {dag_id: [] for dag_id in dag_ids}
    if not dag_ids:
        return runs
    # The newest few runs of each DAG in one query, not every run of every published pipeline.
    rank = func.row_number().over(partition_by=DagRun.dag_id, order_by=DagRun.id.desc()).label("rank")
    ranked = (
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, rank)
        .where(DagRun.dag_id.in_(list(dag_ids)))
        .subquery()
    )
    query = select(ranked).where(ranked.c.rank <= RECENT_RUNS).order_by(ranked.c.dag_id, ranked.c.rank)
    with create_session() as session:
        for dag_id, run_id, state, start_date, _ in session.execute(query):
            started = start_date.isoformat(timespec="seconds") if start_date else ""
            runs[dag_id].append({"run_id": run_id, "state": str(state), "started": started})
    return runs


def overview(published: Sequence[DagDocument], endpoints: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the page shows, as data (also served as JSON at ``/aml/pipelines``)."""
    base = _base_url()
    runs = _recent_runs([d.dag_id for d in published])
    pipelines = []
    for document in published:
        meta, spec = document.meta, document.spec
        pipelines.append(
            {
                "id": meta["id"],
                "name": meta["name"],
                "version": meta.get("version"),
                "status": meta.get("status", "Active"),
                "description": meta.get("description"),
                "dag_id": document.dag_id,
                "endpoint": f"{base}/aml/pipelines/{meta['id']}/submit",
                "parameters": [
                    {"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                    for p in (spec.parameters if spec else ())
                ],
                "recent_runs": runs.get(document.dag_id, []),
            }
        )
    return {
        "pipelines": pipelines,
        "endpoints": [
            {
                "name": e["name"],
                "default_version": e["default_version"],
                "versions": e["versions"],
                "endpoint": f"{base}/aml/endpoints/{e['name']}/submit",
            }
            for e in endpoints
        ],
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(data: Mapping[str, Any]) -> str:
    """The page as HTML (every value escaped)."""
    pipeline_rows = []
    for p in data["pipelines"]:
        params = (
            "<br>".join(
                f"<code>{escape(q['name'])}</code>: {escape(q['type'])} = <code>{escape(str(q['default']))}</code>"
                + (f" <small>{escape(q['description'])}</small>" if q.get("description") else "")
                for q in p["parameters"]
            )
            or "-"
        )
        runs = (
            "<br>".join(
                f"<span class='state {escape(r['state'])}'>{escape(r['state'])}</span> "
                f"<small>{escape(r['run_id'])}</small>"
                for r in p["recent_runs"]
            )
            or "-"
        )
        pipeline_rows.append(
            [
                f"<b>{escape(p['name'])}</b><br><small>{escape(p['id'])}</small>",
                escape(p["version"] or "-"),
                escape(p["status"]),
                f"<code>{escape(p['endpoint'])}</code>",
                params,
                runs,
            ]
        )
    endpoint_rows = [
        [
            f"<b>{escape(e['name'])}</b>",
            escape(e["default_version"]),
            "<br>".join(f"{escape(v)}: <small>{escape(pid)}</small>" for v, pid in sorted(e["versions"].items())),
            f"<code>{escape(e['endpoint'])}</code>",
        ]
        for e in data["endpoints"]
    ]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Pipelines</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2933; }}
 table {{ border-collapse: collapse; width: 100%; margin-bottom: 2rem; }}
 th, td {{ border-bottom: 1px solid #d9e2ec; padding: .5rem; text-align: left; vertical-align: top; }}
 th {{ background: #f0f4f8; }} code {{ font-size: .85em; }}
 .state.success {{ color: #137333; }} .state.failed {{ color: #c5221f; }} .state.running {{ color: #1a73e8; }}
</style></head><body>
<h1>Published pipelines</h1>
{_table(["Pipeline", "Version", "Status", "Endpoint", "Parameters", "Recent runs"], pipeline_rows)}
<h1>Pipeline endpoints</h1>
{_table(["Endpoint", "Default version", "Versions", "URL"], endpoint_rows)}
<p><small>Submit with <code>POST &lt;endpoint&gt;</code>, an Airflow bearer token and SDK v1's body
(<code>ExperimentName</code>, <code>ParameterAssignments</code>). API description:
<a href="{escape(_base_url())}/aml/openapi.json" target="_top">openapi.json</a>.</small></p>
</body></html>"""
