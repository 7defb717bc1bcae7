"""The provisioned Grafana dashboard: well-formed, wired to the provisioned datasource, and covering what
an operator needs. That its queries run against the real server's metrics is tested in
test_ops_prometheus.py."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "trm-service.json"
GRID_WIDTH = 24
# Each topic the dashboard must show, and a metric whose presence in a panel query shows it.
TOPICS = {
    "request rate and errors per model": "trm_requests_total",
    "latency quantiles": "trm_request_latency_seconds_bucket",
    "steps used": "trm_steps_used_bucket",
    "halting reasons": "trm_halt_reasons_total",
    "answers that flag themselves": "trm_flagged_answers_total",
    "batch size": "trm_batch_size_sum",
    "queue": "trm_queued_requests",
    "in flight": "trm_inflight_requests",
    "RSS": "process_resident_memory_bytes",
    "CPU": "process_cpu_seconds_total",
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def graph_panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]


def test_every_query_uses_the_datasource_variable() -> None:
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "model", "instance"} <= variables
    for panel in graph_panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()


def test_dashboard_covers_every_operating_signal() -> None:
    queries = " ".join(t["expr"] for p in graph_panels() for t in p["targets"])
    missing = [topic for topic, metric in TOPICS.items() if metric not in queries]
    assert not missing


def test_provisioning_points_at_the_dashboard_and_datasource() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "trm.yml").read_text())["providers"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
