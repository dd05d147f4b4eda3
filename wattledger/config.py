"""Configuration: one TOML file, ``WATTLEDGER_*`` environment overrides, flags over both.

The file is found at ``--config``, else ``WATTLEDGER_CONFIG``, else ``wattledger.toml`` in the
user's config directory (absent is fine: every setting has a default). Scalar settings can be
overridden from the environment as ``WATTLEDGER_<SECTION>_<KEY>`` (for example
``WATTLEDGER_AGENT_NODE`` or ``WATTLEDGER_COLLECTOR_LISTEN``); the database is ``WATTLEDGER_DB``.
Unknown keys are errors, with the nearest known key suggested, because a silently ignored typo
in a cost tool means a wrong bill.
"""

from __future__ import annotations

import difflib
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
    if source.is_file():
        try:
            document = tomllib.loads(source.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"config file {source} does not exist; check --config or {ENV_CONFIG}")

    config = _build(document, source if source.is_file() else None)
    _apply_environment(config, environ)
    _validate(config)
    return config


def _build(document: dict[str, Any], source: Path | None) -> Config:
    where = str(source) if source else "config"
    known = {"db", "agent", "collector", "report", "chargeback", "schedule"}
    _reject_unknown(document, known, "", where)

    agent_doc = dict(document.get("agent", {}))
    endpoint_docs = agent_doc.pop("endpoints", [])
    agent = _dataclass_from(AgentConfig, agent_doc, "agent", where)
    for i, endpoint_doc in enumerate(endpoint_docs):
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
    for section_name in ("agent", "collector", "report"):
        section = getattr(config, section_name)
        for f in fields(section):
            variable = f"{ENV_PREFIX}{section_name.upper()}_{f.name.upper()}"
            if variable not in environ:
                continue
            setattr(section, f.name, _from_env(variable, environ[variable], str(f.type)))


def _from_env(variable: str, raw: str, expected: str) -> Any:
    try:
        if expected.startswith("float"):
            return float(raw)
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
            return {k.strip(): v.strip() for k, v in pairs}
        if expected.startswith("list"):
            return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(
            f"environment variable {variable}={raw!r} is not a valid {expected.split(' ')[0]}"
        ) from None
    return raw


def _validate(config: Config) -> None:
    agent = config.agent
    for name in ("sample_interval_s", "scrape_interval_s", "export_interval_s", "nvml_timeout_s"):
        if getattr(agent, name) <= 0:
            raise ConfigError(f"agent.{name} must be above zero")
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

    if config.report.default_output_token_weight <= 0:
        raise ConfigError("report.default_output_token_weight must be above zero")
