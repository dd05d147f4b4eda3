"""The ``[chargeback]`` section: cost centres, allocation rules, idle handling, FOCUS names.

Example::

    [chargeback]
    default_centre = "platform"      # catches what no rule matches
    idle = "centre"                  # none | even | proportional | centre
    idle_centre = "platform"         # with idle = "centre"
    granularity = "day"              # hour | day: the length of one charge period
    billing_account_id = "gpu-fleet"

    [chargeback.centres]             # id = display name
    search = "Search"
    platform = "Platform"

    [[chargeback.rules]]             # first match wins
    centre = "search"
    endpoint = "llama-*"             # glob, or a list of globs; also model, node
    tags = { team = "search" }       # agent tags, each value a glob

A rule matches when every key it gives matches; a key given as a list matches when any item
does. Every cost centre a rule or setting names must be declared in ``[chargeback.centres]``, so
a typo is an error at start, not a row billed to a centre nobody reads.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from wattledger.cli.chargeback.periods import GRANULARITIES
from wattledger.errors import ConfigError

IDLE_MODES = ("none", "even", "proportional", "centre")
MATCH_KEYS = ("endpoint", "model", "node", "tags")
DEFAULT_CENTRE = "unallocated"
DEFAULT_PROVIDER = "GPU inference fleet"

SECTION_KEYS = {
    "centres",
    "rules",
    "default_centre",
    "idle",
    "idle_centre",
    "granularity",
    "billing_account_id",
    "billing_account_name",
    "provider_name",
    "publisher_name",
    "invoice_issuer_name",
}
RULE_KEYS = {"centre", *MATCH_KEYS}


@dataclass(frozen=True)
class Subject:
    """What a rule looks at: where some GPU time or some tokens were spent."""

    node: str
    endpoint: str | None = None
    model: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    centre: str
    endpoint: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def matches(self, subject: Subject) -> bool:
        fields = (
            (self.endpoint, subject.endpoint),
            (self.model, subject.model),
            (self.node, subject.node),
        )
        for patterns, value in fields:
            if patterns and (value is None or not any(fnmatchcase(value, p) for p in patterns)):
                return False
        for key, pattern in self.tags:
            value = subject.tags.get(key)
            if value is None or not fnmatchcase(value, pattern):
                return False
        return True


@dataclass(frozen=True)
class Account:
    """The names FOCUS asks of every row: who bills whom, under which account."""

    billing_account_id: str = "gpu-fleet"
    billing_account_name: str = DEFAULT_PROVIDER
    provider_name: str = DEFAULT_PROVIDER
    publisher_name: str = DEFAULT_PROVIDER
    invoice_issuer_name: str = DEFAULT_PROVIDER
    currency: str = "USD"


@dataclass(frozen=True)
class ChargebackSettings:
    centres: Mapping[str, str] = field(default_factory=lambda: {DEFAULT_CENTRE: "Unallocated"})
    rules: tuple[Rule, ...] = ()
    default_centre: str = DEFAULT_CENTRE
    idle: str = "none"
    idle_centre: str | None = None
    granularity: str = "day"
    account: Account = field(default_factory=Account)

    def centre_for(self, subject: Subject) -> str:
        for rule in self.rules:
            if rule.matches(subject):
                return rule.centre
        return self.default_centre


def parse_chargeback(raw: Mapping[str, Any], where: str = "config") -> ChargebackSettings:
    """Check the raw ``[chargeback]`` table and build the settings; raises :class:`ConfigError`."""
    reject_unknown(raw, SECTION_KEYS, "chargeback.", where)

    centres = _centres(raw.get("centres"), where)
    default_centre = _text(raw, "default_centre", where, None)
    if not centres:
        default_centre = default_centre or DEFAULT_CENTRE
        centres = {
            default_centre: "Unallocated" if default_centre == DEFAULT_CENTRE else default_centre
        }
    if default_centre is None:
        raise ConfigError(
            f"{where}: chargeback.default_centre is missing; "
            "name the centre that pays for what no rule matches"
        )
    _known_centre(default_centre, centres, "chargeback.default_centre", where)

    items = _list(raw.get("rules", []), "chargeback.rules", where)
    rules = tuple(_rule(item, i, centres, where) for i, item in enumerate(items))

    idle = _text(raw, "idle", where, "none")
    if idle not in IDLE_MODES:
        raise ConfigError(
            f"{where}: chargeback.idle is {idle!r}; use one of {', '.join(IDLE_MODES)}"
        )
    idle_centre = _text(raw, "idle_centre", where, None)
    if idle == "centre" and idle_centre is None:
        raise ConfigError(
            f'{where}: chargeback.idle = "centre" needs chargeback.idle_centre, '
            "the centre that pays for idle time"
        )
    if idle != "centre" and idle_centre is not None:
        raise ConfigError(
            f'{where}: chargeback.idle_centre is only used with idle = "centre" (idle is {idle!r})'
        )
    if idle_centre is not None:
        _known_centre(idle_centre, centres, "chargeback.idle_centre", where)

    granularity = _text(raw, "granularity", where, "day")
    if granularity not in GRANULARITIES:
        raise ConfigError(
            f"{where}: chargeback.granularity is {granularity!r}; "
            f"use one of {', '.join(GRANULARITIES)}"
        )

    provider = _text(raw, "provider_name", where, DEFAULT_PROVIDER)
    account = Account(
        billing_account_id=_text(raw, "billing_account_id", where, "gpu-fleet"),
        billing_account_name=_text(raw, "billing_account_name", where, provider),
        provider_name=provider,
        publisher_name=_text(raw, "publisher_name", where, provider),
        invoice_issuer_name=_text(raw, "invoice_issuer_name", where, provider),
    )
    return ChargebackSettings(
        centres, rules, default_centre, idle, idle_centre, granularity, account
    )


def _centres(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f'{where}: chargeback.centres should be a table of id = "display name"')
    centres = {}
    for centre, name in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"{where}: chargeback.centres.{centre} should be a display name, not {name!r}"
            )
        centres[str(centre)] = name
    return centres


def _rule(item: Any, i: int, centres: Mapping[str, str], where: str) -> Rule:
    key = f"chargeback.rules[{i}]"
    if not isinstance(item, Mapping):
        raise ConfigError(
            f"{where}: {key} should be a table: centre and endpoint, model, node or tags"
        )
    reject_unknown(item, RULE_KEYS, key + ".", where)
    centre = _text(item, "centre", where, None, prefix=key + ".")
    if centre is None:
        raise ConfigError(
            f"{where}: {key}.centre is missing; say which cost centre the rule charges"
        )
    _known_centre(centre, centres, f"{key}.centre", where)
    if not any(name in item for name in MATCH_KEYS):
        raise ConfigError(
            f"{where}: {key} matches everything; "
            "give endpoint, model, node or tags (or use default_centre)"
        )

    patterns = {name: _patterns(item.get(name), f"{key}.{name}", where) for name in MATCH_KEYS[:3]}
    tags = item.get("tags", {})
    if not isinstance(tags, Mapping) or ("tags" in item and not tags):
        raise ConfigError(
            f'{where}: {key}.tags should be a table of tag = "glob", e.g. {{ team = "a*" }}'
        )
    for tag, pattern in tags.items():
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}: {key}.tags.{tag} should be text (a glob), not {pattern!r}")
    return Rule(centre, tags=tuple(sorted(tags.items())), **patterns)


def _patterns(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{where}: {key} should be a glob or a list of globs, not {value!r}")
    return tuple(items)


def _known_centre(centre: str, centres: Mapping[str, str], key: str, where: str) -> None:
    if centre not in centres:
        close = difflib.get_close_matches(centre, sorted(centres), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}: {key} names cost centre {centre!r}, "
            f"which is not in chargeback.centres{hint}; "
            "declare it there"
        )


def _text(
    values: Mapping[str, Any],
    name: str,
    where: str,
    default: str | None,
    *,
    prefix: str = "chargeback.",
) -> str | None:
    if name not in values:
        return default
    value = values[name]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {prefix}{name} should be non-empty text, not {value!r}")
    return value


def _list(value: Any, key: str, where: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key} should be an array of tables ([[{key}]])")
    return value


def reject_unknown(values: Mapping[str, Any], known: set[str], prefix: str, where: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(f"{where}: unknown setting {prefix}{key}{hint}")
