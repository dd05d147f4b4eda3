"""Writes dashboards/wattledger.json from the panel queries below (run after editing them).

Costs are computed in SQL the way reports compute them: GPU hours at the SKU's price in force at
each hour (a rental rate, or capex over its years), plus kWh x PUE x the site's electricity price
(the 'default' site when a site has none of its own).
"""

import json
from pathlib import Path

PRICED = """WITH u AS (
  SELECT uh.hour, uh.model, g.architecture, g.sku, g.site, uh.gpu_seconds, uh.energy_j,
         uh.input_tokens + uh.output_tokens AS tokens
  FROM usage_hourly uh JOIN gpus g ON g.uuid = uh.gpu_uuid
  WHERE $__unixEpochFilter(uh.hour) AND uh.endpoint_id IS NOT NULL
), priced AS (
  SELECT u.*,
    (SELECT COALESCE(p.usd_per_gpu_hour, p.capex_usd / NULLIF(p.amortization_years * 8760, 0))
       FROM prices p WHERE p.scope = 'sku' AND p.key = u.sku AND p.effective_from <= u.hour
       ORDER BY p.effective_from DESC LIMIT 1) AS gpu_rate,
    (SELECT p.usd_per_kwh * COALESCE(p.pue, 1.0)
       FROM prices p WHERE p.scope = 'site' AND p.key IN (u.site, 'default')
         AND p.effective_from <= u.hour
       ORDER BY (p.key = u.site) DESC, p.effective_from DESC LIMIT 1) AS kwh_rate
  FROM u
)
"""

PANELS = [
    (
        "USD per million tokens by model and architecture",
        "table",
        PRICED
        + """SELECT model, architecture,
  SUM(gpu_seconds / 3600.0 * COALESCE(gpu_rate, 0) + energy_j / 3.6e6 * COALESCE(kwh_rate, 0))
    / NULLIF(SUM(tokens), 0) * 1e6 AS usd_per_mtok,
  SUM(tokens) AS tokens
FROM priced GROUP BY model, architecture ORDER BY model, architecture""",
    ),
    (
        "USD per million tokens over time",
        "timeseries",
        PRICED
        + """SELECT $__unixEpochGroupAlias(hour, 1h),
  SUM(gpu_seconds / 3600.0 * COALESCE(gpu_rate, 0) + energy_j / 3.6e6 * COALESCE(kwh_rate, 0))
    / NULLIF(SUM(tokens), 0) * 1e6 AS usd_per_mtok
FROM priced GROUP BY 1 ORDER BY 1""",
    ),
    (
        "Prefill and decode time",
        "timeseries",
        """SELECT $__unixEpochGroupAlias(hour, 1h),
  SUM(prefill_seconds) AS prefill_s, SUM(decode_seconds) AS decode_s
FROM usage_hourly WHERE $__unixEpochFilter(hour) GROUP BY 1 ORDER BY 1""",
    ),
    (
        "Idle share of GPU time",
        "timeseries",
        """SELECT $__unixEpochGroupAlias(hour, 1h),
  1.0 - SUM(serving_seconds) / NULLIF(SUM(gpu_seconds), 0) AS idle_share
FROM usage_hourly WHERE $__unixEpochFilter(hour) GROUP BY 1 ORDER BY 1""",
    ),
    (
        "Energy per token by model and architecture",
        "table",
        """SELECT uh.model, g.architecture,
  SUM(uh.energy_j) / NULLIF(SUM(uh.input_tokens + uh.output_tokens), 0) AS joules_per_token
FROM usage_hourly uh JOIN gpus g ON g.uuid = uh.gpu_uuid
WHERE $__unixEpochFilter(uh.hour) AND uh.endpoint_id IS NOT NULL
GROUP BY uh.model, g.architecture ORDER BY uh.model, g.architecture""",
    ),
]


def panel(index: int, title: str, kind: str, sql: str) -> dict:
    return {
        "id": index + 1,
        "title": title,
        "type": kind,
        "datasource": {"type": "grafana-postgresql-datasource", "uid": "wattledger-pg"},
        "gridPos": {"x": (index % 2) * 12, "y": (index // 2) * 9, "w": 12, "h": 9},
        "targets": [
            {
                "refId": "A",
                "datasource": {"type": "grafana-postgresql-datasource", "uid": "wattledger-pg"},
                "editorMode": "code",
                "format": "table" if kind == "table" else "time_series",
                "rawQuery": True,
                "rawSql": sql,
            }
        ],
    }


def dashboard() -> dict:
    return {
        "uid": "wattledger-cost",
        "title": "wattledger: cost per million tokens",
        "tags": ["wattledger", "gpu", "cost"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "5m",
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


if __name__ == "__main__":
    target = Path(__file__).parent / "dashboards" / "wattledger.json"
    target.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {target}")
