"""The Airflow UI in headless Chromium: log in, trigger a published pipeline from its form, see the Pipelines page."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.server.conftest import build, output_of, wait_run
from tests.support.airflow_server import PASSWORDS

pytestmark = pytest.mark.server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# As the machine's probe runs it: no sandbox as root, and no background calls to a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_trigger_from_the_ui_form_and_the_pipelines_page(remote, airflow_server, tmp_path):
    from playwright.sync_api import sync_playwright

    ws, _, src = remote
    published = build(ws, src).publish(name="From the UI", version="2")
    assert Path(CHROMIUM).is_file(), "make test installs Debian's chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{airflow_server.url}/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORDS["admin"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{airflow_server.url}/", timeout=30_000)

        # The trigger form shows each parameter with its type, default and description.
        page.goto(f"{airflow_server.url}/dags/{published.dag_id}")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("how far to compare").wait_for()
        field = dialog.get_by_role("spinbutton")  # a number input: the parameter is an integer
        assert field.input_value() == "10"
        field.fill("42")
        dialog.get_by_role("button", name="Trigger").click()
        deadline = time.monotonic() + 60
        while not ws._deployment.list_dag_runs(published.dag_id) and time.monotonic() < deadline:
            time.sleep(1)

        (run,) = ws._deployment.list_dag_runs(published.dag_id)
        assert output_of(ws, wait_run(ws, run.run_id), tmp_path) == {"pipeline_arg": 42}

        # The Pipelines page lists it, with its endpoint, parameters and the run.
        page.goto(f"{airflow_server.url}/plugin/aml-pipelines")
        frame = page.frame_locator("iframe").first
        frame.get_by_text("From the UI").wait_for()
        row = frame.locator("tr", has_text="From the UI")
        assert published.endpoint in row.inner_text()
        assert "pipeline_arg" in row.inner_text() and "success" in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "pipelines-page.png"), full_page=True)
        browser.close()
    listed = requests.get(f"{airflow_server.url}/aml/pipelines", headers=airflow_server.headers(), timeout=30).json()
    (entry,) = [p for p in listed["pipelines"] if p["id"] == published.id]
    assert [(r["run_id"], r["state"]) for r in entry["recent_runs"]] == [(run.run_id, "success")]
    assert entry["parameters"] == [
        {"name": "pipeline_arg", "type": "int", "default": 10, "description": "how far to compare"}
    ]
