"""Configuration: one TOML file, ``WATTLEDGER_*`` environment overrides, flags over both.

The file is found at ``--config``, else ``WATTLEDGER_CONFIG``, else ``wattledger.toml`` in the
user's config directory (absent is fine: every setting has a default). Scalar settings can be
overridden from the environment as ``WATTLEDGER_<SECTION>_<KEY>`` (for example
``WATTLEDGER_AGENT_NODE`` or ``WATTLEDGER_COLLECTOR_LISTEN``); the database is ``WATTLEDGER_DB``.
Lists of tables (``[[agent.endpoints]]``) have no one-line form and come from the file only.
Unknown keys, and unknown ``WATTLEDGER_AGENT_*``, ``WATTLEDGER_COLLECTOR_*`` and
``WATTLEDGER_REPORT_*`` variables, are errors with the nearest known name suggested, because a
silently ignored typo in a cost tool means a wrong bill. Numbers must be finite.
"""

from __future__ import annotations

import difflib
import math
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from wattledger import contract
from wattledger.errors import ConfigError

ENV_CONFIG = "WATTLEDGER_CONFIG"
ENV_PREFIX = "WATTLEDGER_"
SECTIONS = ("agent", "collector", "report")
# Settings that are tables of tables: they have no one-line form for an environment variable.
FILE_ONLY = {"agent": ("endpoints",)}
CURRENCIES = ("USD",)
MAX_PORT = 65_535


@dataclass
class EndpointConfig:
    """One serving-engine metrics endpoint the agent scrapes."""

    name: str
    url: str
    engine: str | None = None
    role: str | None = None
    gpus: list[str] = field(default_factory=list)
    model: str | None = None
    timeout_s: float = 5.0


@dataclass
class AgentConfig:
    node: str = field(default_factory=socket.gethostname)
    cluster: str | None = None
    site: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    state_dir: str = field(
        default_factory=lambda: platformdirs.user_state_dir("wattledger-agent", appauthor=False)
    )
    sample_interval_s: float = 1.0
    scrape_interval_s: float = 15.0
    export_interval_s: float = 60.0
    collector_url: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    db: str | None = None
    nvml_timeout_s: float = 2.0
    spool_max_mb: float = 256.0
    endpoints: list[EndpointConfig] = field(default_factory=list)


@dataclass
class CollectorConfig:
    listen: str = "127.0.0.1:4318"
    db: str | None = None
    max_body_mb: float = 8.0
    max_points: int = 200_000
    tls_cert: str | None = None
    tls_key: str | None = None
    allow_unauthenticated_remote: bool = False


@dataclass
class ReportConfig:
    """How reports estimate what engines do not measure."""

    # Without measured phase time, an output token is taken to cost this many input tokens of GPU
    # time when splitting an aggregated endpoint's cost between prefill and decode.
    default_output_token_weight: float = 3.0
    currency: str = "USD"


@dataclass
class Config:
    db: str | None = None
    agent: AgentConfig = field(default_factory=AgentConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    chargeback: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("wattledger", appauthor=False)) / "wattledger.toml"


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the file (if any), apply environment overrides, and check every value."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get(ENV_CONFIG)
    source = Path(explicit) if explicit else default_config_path()

    document: dict[str, Any] = {}
    if explicit:
        check_config_path(source)
    if source.is_file():
        document = _read_document(source)

    config = _build(document, source if source.is_file() else None)
    _apply_environment(config, environ)
    _validate(config)
    return config


def check_config_path(source: str | Path) -> None:
    """Refuse a config path given by a person that is missing or is not a file."""
    source = Path(source)
    if source.is_dir():
        raise ConfigError(
            f"config file {source} is a directory; give the TOML file itself, "
            f"e.g. {source / 'wattledger.toml'}"
        )
    if not source.exists():
        raise ConfigError(f"config file {source} does not exist; check --config or {ENV_CONFIG}")


def _read_document(source: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {source} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None


def _build(document: dict[str, Any], source: Path | None) -> Config:
    where = str(source) if source else "config"
    known = {"db", "agent", "collector", "report", "chargeback", "schedule"}
    _reject_unknown(document, known, "", where)
    for name in ("agent", "collector", "report", "chargeback", "schedule"):
        if name in document and not isinstance(document[name], dict):
            raise ConfigError(
                f"{where}: {name} should be a table ([{name}]), not {document[name]!r}"
            )
    if "db" in document and not isinstance(document["db"], str):
        raise ConfigError(f"{where}: db should be a database URL string, not {document['db']!r}")

    agent_doc = dict(document.get("agent", {}))
    endpoint_docs = agent_doc.pop("endpoints", [])
    if not isinstance(endpoint_docs, list):
        raise ConfigError(
            f"{where}: agent.endpoints should be a list of tables ([[agent.endpoints]])"
        )
    agent = _dataclass_from(AgentConfig, agent_doc, "agent", where)
    for i, endpoint_doc in enumerate(endpoint_docs):
        if not isinstance(endpoint_doc, dict):
            raise ConfigError(
                f"{where}: agent.endpoints[{i}] should be a table ([[agent.endpoints]])"
            )
        for required in ("name", "url"):
            if required not in endpoint_doc:
                raise ConfigError(f"{where}: agent.endpoints[{i}] needs a {required!r}")
        agent.endpoints.append(
            _dataclass_from(EndpointConfig, endpoint_doc, f"agent.endpoints[{i}]", where)
        )

    return Config(
        db=document.get("db"),
        agent=agent,
        collector=_dataclass_from(
            CollectorConfig, document.get("collector", {}), "collector", where
        ),
        report=_dataclass_from(ReportConfig, document.get("report", {}), "report", where),
        chargeback=dict(document.get("chargeback", {})),
        schedule=dict(document.get("schedule", {})),
        source=source,
    )


def _dataclass_from(cls, values: Mapping[str, Any], section: str, where: str):
    names = {f.name for f in fields(cls)} - {"endpoints"}
    _reject_unknown(values, names, section + ".", where)
    instance = cls(**{k: v for k, v in values.items() if k in names})
    for f in fields(cls):
        if f.name in values:
            _check_type(instance, f, section, where)
    return instance


def _check_type(instance, f, section: str, where: str) -> None:
    value = getattr(instance, f.name)
    expected = str(f.type)
    ok = True
    if expected.startswith("float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"{where}: {section}.{f.name} must be a finite number, not {value}")
        if ok:
            setattr(instance, f.name, float(value))
    elif expected.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected.startswith("bool"):
        ok = isinstance(value, bool)
    elif expected.startswith("str"):
        ok = isinstance(value, str) or (value is None and "None" in expected)
    elif expected.startswith("list"):
        ok = isinstance(value, list)
        if ok:
            setattr(instance, f.name, [str(v) for v in value])
    elif expected.startswith("dict"):
        ok = isinstance(value, dict)
        if ok:
            setattr(instance, f.name, {str(k): str(v) for k, v in value.items()})
    if not ok:
        raise ConfigError(
            f"{where}: {section}.{f.name} should be {expected.split(' ')[0]}, not {value!r}"
        )


def _reject_unknown(values: Mapping[str, Any], known: set[str], prefix: str, where: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(f"{where}: unknown setting {prefix}{key}{hint}")


def _apply_environment(config: Config, environ: Mapping[str, str]) -> None:
    if environ.get(ENV_PREFIX + "DB"):
        config.db = environ[ENV_PREFIX + "DB"]
    for section_name in SECTIONS:
        section = getattr(config, section_name)
        prefix = f"{ENV_PREFIX}{section_name.upper()}_"
        variables = {f"{prefix}{f.name.upper()}": f for f in fields(section)}
        for variable in sorted(name for name in environ if name.startswith(prefix)):
            f = variables.get(variable)
            if f is None:
                close = difflib.get_close_matches(variable, sorted(variables), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError(f"unknown environment variable {variable}{hint}")
            if f.name in FILE_ONLY.get(section_name, ()):
                raise ConfigError(
                    f"environment variable {variable}: {section_name}.{f.name} is a list of "
                    f"tables and cannot come from the environment; write "
                    f"[[{section_name}.{f.name}]] tables in the config file"
                )
            setattr(section, f.name, _from_env(variable, environ[variable], str(f.type)))


def _from_env(variable: str, raw: str, expected: str) -> Any:
    try:
        if expected.startswith("float"):
            value = float(raw)
            if not math.isfinite(value):
                raise ConfigError(
                    f"environment variable {variable}={raw!r} must be a finite number"
                )
            return value
        if expected.startswith("int"):
            return int(raw)
        if expected.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if expected.startswith("dict"):
            pairs = [item.split("=", 1) for item in raw.split(",") if item]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError(raw)
            return {k.strip(): v.strip() for k, v in pairs}
        if expected.startswith("list"):
            return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError:
        kind = expected.split(" ")[0]
        kind = "KEY=VALUE list" if kind.startswith("dict") else kind
        raise ConfigError(
            f"environment variable {variable}={raw!r} is not a valid {kind}"
        ) from None
    return raw


def parse_listen(listen: str, setting: str = "collector.listen") -> tuple[str, int]:
    """``HOST:PORT`` as a host and a port number (0 asks the system for a free port)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{setting} {listen!r} must be HOST:PORT, e.g. 127.0.0.1:4318")
    number = int(port)
    if number > MAX_PORT:
        raise ConfigError(
            f"{setting} {listen!r}: port {number} is out of range; use 1 to {MAX_PORT}"
        )
    return host.strip("[]") or "0.0.0.0", number


def _validate(config: Config) -> None:
    agent = config.agent
    if not agent.node.strip():
        raise ConfigError(
            "agent.node must not be empty; set it to this node's name, or leave it unset to use "
            "the host name (check WATTLEDGER_AGENT_NODE)"
        )
    for name in ("sample_interval_s", "scrape_interval_s", "export_interval_s", "nvml_timeout_s"):
        if not getattr(agent, name) > 0:
            raise ConfigError(f"agent.{name} must be above zero")
    if not agent.spool_max_mb >= 0:
        raise ConfigError("agent.spool_max_mb must not be negative (0 turns the spool off)")
    if agent.export_interval_s < agent.sample_interval_s:
        raise ConfigError(
            "agent.export_interval_s must not be shorter than agent.sample_interval_s"
        )

    names = set()
    for endpoint in agent.endpoints:
        if endpoint.name in names:
            raise ConfigError(
                f"agent.endpoints: the name {endpoint.name!r} is used twice; names must be unique"
            )
        names.add(endpoint.name)
        if endpoint.engine is not None and endpoint.engine not in contract.ENGINES:
            raise ConfigError(
                f"agent.endpoints {endpoint.name!r}: engine {endpoint.engine!r} is unknown; "
                f"use one of {', '.join(contract.ENGINES)}"
            )
        if endpoint.role is not None and endpoint.role not in contract.ROLES:
            raise ConfigError(
                f"agent.endpoints {endpoint.name!r}: role {endpoint.role!r} is unknown; "
                f"use one of {', '.join(contract.ROLES)}"
            )
        if not endpoint.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"agent.endpoints {endpoint.name!r}: url must start with http:// or https://"
            )
        if not endpoint.timeout_s > 0:
            raise ConfigError(f"agent.endpoints {endpoint.name!r}: timeout_s must be above zero")

    collector = config.collector
    parse_listen(collector.listen)
    if not collector.max_body_mb > 0:
        raise ConfigError(
            f"collector.max_body_mb must be above zero, not {collector.max_body_mb:g}"
        )
    if not collector.max_points > 0:
        raise ConfigError(f"collector.max_points must be above zero, not {collector.max_points}")

    if not config.report.default_output_token_weight > 0:
        raise ConfigError("report.default_output_token_weight must be above zero")
    if config.report.currency not in CURRENCIES:
        raise ConfigError(
            f"report.currency {config.report.currency!r} is not supported; only "
            f"{', '.join(CURRENCIES)} is: give prices in USD and remove the setting"
        )
