"""Deployment files: Kubernetes manifests against the API schemas, the Grafana dashboard's SQL
against a populated PostgreSQL store, and the systemd units' privileges."""

import configparser
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from wattledger import contract as c
from wattledger.cli.reports.prices import PriceEntry, set_prices
from wattledger.collector.ingest import Ingestor
from wattledger.collector.points import COUNTER, Point
from wattledger.collector.usage import refresh

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
GRAFANA = DEPLOY / "grafana"
KUBERNETES_VERSION = "1.30.0"


def manifests():
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                yield path.name, document


def by_kind(kind: str) -> dict:
    [document] = [doc for _name, doc in manifests() if doc["kind"] == kind]
    return document


@pytest.mark.parametrize(
    "name, document", list(manifests()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_manifest_is_valid_against_the_kubernetes_schema(name, document):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")

    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_fails_on_a_misspelt_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = json.loads(json.dumps(by_kind("DaemonSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest():
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]

    assert sorted(listed) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_the_agent_daemonset_names_its_node_reads_gpus_and_holds_no_privilege():
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    [agent] = pod["containers"]
    env = {item["name"]: item for item in agent["env"]}

    assert env["WATTLEDGER_AGENT_NODE"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert pod["runtimeClassName"] == "nvidia"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert agent["securityContext"]["allowPrivilegeEscalation"] is False
    assert "privileged" not in agent["securityContext"]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts["state"] == "/var/lib/wattledger-agent"


def test_the_collector_is_probed_on_health_and_readiness_and_reads_its_secret():
    deployment = by_kind("Deployment")["spec"]["template"]["spec"]
    [collector] = deployment["containers"]

    assert collector["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert collector["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--no-auth" not in collector["args"]
    assert collector["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "wattledger-tokens",
        "key": "database-url",
    }
    assert set(by_kind("Secret")["stringData"]) == {"agent.token", "database-url"}
    assert by_kind("Service")["spec"]["ports"][0]["port"] == 4318


def test_systemd_units_drop_every_capability_and_run_unprivileged():
    for unit in ("wattledger-agent.service", "wattledger-collector.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read(DEPLOY / "systemd" / unit)
        service = parser["Service"]

        assert service["CapabilityBoundingSet"] == "", unit
        assert service["AmbientCapabilities"] == "", unit
        assert service["NoNewPrivileges"] == "yes", unit
        assert service["User"] == "wattledger", unit


# --- Grafana -------------------------------------------------------------------------------

HOUR = 1_764_000_000
S = 1_000_000_000


def test_grafana_provisioning_points_at_the_dashboard_and_the_store():
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/wattledger.yaml").read_text())
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/wattledger.yaml").read_text())
    dashboard = json.loads((GRAFANA / "dashboards/wattledger.json").read_text())

    [source] = datasource["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert provider["providers"][0]["type"] == "file"
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}


def test_the_dashboard_file_is_what_its_builder_writes():
    sys.path.insert(0, str(GRAFANA))
    try:
        import build_dashboard
    finally:
        sys.path.remove(str(GRAFANA))

    written = json.loads((GRAFANA / "dashboards/wattledger.json").read_text())
    assert written == build_dashboard.dashboard()


def grafana_sql(sql: str, since: int, until: int) -> str:
    """Expand the Grafana macros the panels use, as Grafana's PostgreSQL source does."""
    sql = re.sub(
        r"\$__unixEpochFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} >= {since} AND {m.group(1)} <= {until}",
        sql,
    )
    sql = re.sub(
        r"\$__unixEpochGroupAlias\(([^,]+),\s*1h\)",
        lambda m: f'floor({m.group(1)} / 3600) * 3600 AS "time"',
        sql,
    )
    assert "$__" not in sql
    return sql


def one_h100_hour():
    """The worked example: 600 W for an hour, 3 M input and 1 M output tokens, 1/4 prefill."""
    resource = {c.RES_NODE: "node-a", c.RES_SITE: "dc1"}
    gpu = {c.ATTR_HW_ID: "GPU-h100", c.ATTR_SKU: "H100", c.ATTR_ARCHITECTURE: "hopper"}
    points = []
    for minute in range(1, 61):
        t = HOUR * S + minute * 60 * S
        points.append(
            Point(c.METRIC_ENERGY, COUNTER, resource, gpu, HOUR * S, t, 36_000.0 * minute)
        )
        base = {
            c.ATTR_ENDPOINT: "serve",
            c.ATTR_ENGINE: "vllm",
            c.ATTR_MODEL: "model-x",
            c.ATTR_GPU_IDS: ("GPU-h100",),
        }
        for token_type, per_minute in (("input", 50_000.0), ("output", 50_000.0 / 3)):
            points.append(
                Point(
                    c.METRIC_TOKENS,
                    COUNTER,
                    resource,
                    {**base, c.ATTR_TOKEN_TYPE: token_type},
                    HOUR * S,
                    t,
                    per_minute * minute,
                )
            )
        for phase, per_minute in (("prefill", 15.0), ("decode", 45.0)):
            points.append(
                Point(
                    c.METRIC_PHASE_TIME,
                    COUNTER,
                    resource,
                    {**base, c.ATTR_PHASE: phase},
                    HOUR * S,
                    t,
                    per_minute * minute,
                )
            )
    return points


@pytest.fixture
def populated_postgres(request):
    from conftest import _truncate_all

    engine = request.getfixturevalue("_pg_engine")
    _truncate_all(engine)
    Ingestor(engine).ingest(one_h100_hour())
    set_prices(
        engine,
        [
            PriceEntry("sku", "H100", 0, usd_per_gpu_hour=2.00),
            PriceEntry("site", "default", 0, usd_per_kwh=0.10, pue=1.25),
        ],
    )
    refresh(engine)
    return engine


def panel_rows(engine, title: str) -> list[tuple]:
    dashboard = json.loads((GRAFANA / "dashboards/wattledger.json").read_text())
    [panel] = [p for p in dashboard["panels"] if p["title"] == title]
    sql = grafana_sql(panel["targets"][0]["rawSql"], HOUR - 3600, HOUR + 7200)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


@pytest.mark.postgres
def test_dashboard_usd_per_million_tokens_matches_the_worked_example(populated_postgres):
    [(model, architecture, usd_per_mtok, tokens)] = panel_rows(
        populated_postgres, "USD per million tokens by model and architecture"
    )

    assert (model, architecture) == ("model-x", "hopper")
    assert usd_per_mtok == pytest.approx(0.51875, abs=1e-9)
    assert tokens == pytest.approx(4_000_000, abs=1e-6)


@pytest.mark.postgres
def test_dashboard_time_series_panels_run_and_agree(populated_postgres):
    [(hour, usd)] = panel_rows(populated_postgres, "USD per million tokens over time")
    [(_, prefill, decode)] = panel_rows(populated_postgres, "Prefill and decode time")
    [(_, idle)] = panel_rows(populated_postgres, "Idle share of GPU time")
    [(_, _, joules)] = panel_rows(populated_postgres, "Energy per token by model and architecture")

    assert hour == HOUR
    assert usd == pytest.approx(0.51875, abs=1e-9)
    assert (prefill, decode) == (pytest.approx(900.0), pytest.approx(2700.0))
    assert idle == pytest.approx(0.0, abs=1e-9)
    assert joules == pytest.approx(0.54, abs=1e-9)
