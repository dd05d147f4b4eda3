"""The [chargeback] section: cost centres, first-match rules, idle handling, one-line errors."""

import pytest

from wattledger.cli.chargeback.settings import Subject, parse_chargeback
from wattledger.errors import ConfigError

CENTRES = {"search": "Search", "ads": "Ads", "platform": "Platform"}


def settings(**extra):
    return parse_chargeback({"centres": CENTRES, "default_centre": "platform", **extra}, "wl.toml")


def test_first_matching_rule_wins_and_the_default_catches_the_rest():
    chosen = settings(
        rules=[
            {"centre": "search", "endpoint": ["llama-*", "mixtral-*"]},
            {"centre": "ads", "model": "qwen*", "node": "gpu-b*"},
            {"centre": "ads", "tags": {"team": "ads"}},
            {"centre": "platform", "endpoint": "llama-*"},
        ]
    )

    assert chosen.centre_for(Subject("gpu-a1", "llama-70b", "llama-3.1-70b")) == "search"
    assert chosen.centre_for(Subject("gpu-a1", "mixtral-8x7b", "mixtral")) == "search"
    assert chosen.centre_for(Subject("gpu-b2", "qwen-32b", "qwen2.5-32b")) == "ads"
    # The model matches but the node does not: every key a rule gives must match.
    assert chosen.centre_for(Subject("gpu-c1", "qwen-32b", "qwen2.5-32b")) == "platform"
    assert chosen.centre_for(Subject("gpu-c1", None, None, {"team": "ads"})) == "ads"
    assert chosen.centre_for(Subject("gpu-c1", None, None, {"team": "adsx"})) == "platform"
    # Time no endpoint used has no endpoint or model to match.
    assert chosen.centre_for(Subject("gpu-a1", None, None)) == "platform"


def test_defaults_put_everything_in_one_unallocated_centre():
    chosen = parse_chargeback({})

    assert chosen.centres == {"unallocated": "Unallocated"}
    assert chosen.centre_for(Subject("any-node", "ep", "m")) == "unallocated"
    assert chosen.idle == "none"
    assert chosen.granularity == "day"
    assert chosen.account.provider_name == chosen.account.invoice_issuer_name


def test_account_names_follow_the_provider_unless_given():
    chosen = settings(
        provider_name="ACME GPU cloud",
        billing_account_id="acme-1",
        invoice_issuer_name="ACME Finance",
    )

    assert chosen.account.provider_name == "ACME GPU cloud"
    assert chosen.account.publisher_name == "ACME GPU cloud"
    assert chosen.account.billing_account_name == "ACME GPU cloud"
    assert chosen.account.billing_account_id == "acme-1"
    assert chosen.account.invoice_issuer_name == "ACME Finance"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"rules": [{"centre": "serch", "endpoint": "x"}]},
            "wl.toml: chargeback.rules[0].centre names cost centre 'serch', "
            "which is not in chargeback.centres "
            "(did you mean 'search'?); declare it there",
        ),
        (
            {"default_centre": "nobody"},
            "wl.toml: chargeback.default_centre names cost centre 'nobody', "
            "which is not in chargeback.centres; "
            "declare it there",
        ),
        (
            {"idle": "centre", "idle_centre": "finance"},
            "wl.toml: chargeback.idle_centre names cost centre 'finance', "
            "which is not in chargeback.centres; "
            "declare it there",
        ),
        (
            {"idle": "centre"},
            'wl.toml: chargeback.idle = "centre" needs chargeback.idle_centre, '
            "the centre that pays for idle time",
        ),
        (
            {"idle": "shared"},
            "wl.toml: chargeback.idle is 'shared'; use one of none, even, proportional, centre",
        ),
        (
            {"idle_centre": "platform"},
            "wl.toml: chargeback.idle_centre is only used with idle = \"centre\" (idle is 'none')",
        ),
        (
            {"granularity": "week"},
            "wl.toml: chargeback.granularity is 'week'; use one of hour, day",
        ),
        ({"rule": []}, "wl.toml: unknown setting chargeback.rule; did you mean chargeback.rules?"),
        (
            {"rules": [{"centre": "ads"}]},
            "wl.toml: chargeback.rules[0] matches everything; "
            "give endpoint, model, node or tags (or use default_centre)",
        ),
        (
            {"rules": [{"centre": "ads", "modle": "q"}]},
            "wl.toml: unknown setting chargeback.rules[0].modle; "
            "did you mean chargeback.rules[0].model?",
        ),
        (
            {"rules": [{"endpoint": "q"}]},
            "wl.toml: chargeback.rules[0].centre is missing; "
            "say which cost centre the rule charges",
        ),
        (
            {"rules": [{"centre": "ads", "tags": {"team": 7}}]},
            "wl.toml: chargeback.rules[0].tags.team should be text (a glob), not 7",
        ),
        (
            {"rules": [{"centre": "ads", "endpoint": []}]},
            "wl.toml: chargeback.rules[0].endpoint should be a glob or a list of globs, not []",
        ),
        (
            {"rules": {"centre": "ads"}},
            "wl.toml: chargeback.rules should be an array of tables ([[chargeback.rules]])",
        ),
        (
            {"billing_account_id": ""},
            "wl.toml: chargeback.billing_account_id should be non-empty text, not ''",
        ),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as caught:
        settings(**raw)

    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_centres_without_a_default_centre_is_an_error():
    with pytest.raises(ConfigError, match="chargeback.default_centre is missing"):
        parse_chargeback({"centres": CENTRES})
