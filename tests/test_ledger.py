"""The ledger that turns resetting raw counters into never-decreasing exported totals."""

import json

import pytest

from wattledger.agent.ledger import CounterLedger

S = 1_000_000_000


def test_first_sight_is_a_baseline_and_growth_adds_the_difference():
    ledger = CounterLedger()

    first = ledger.observe("gpu0.energy", 5_000.0, 1 * S)
    second = ledger.observe("gpu0.energy", 5_600.0, 2 * S)

    assert (first.added, first.cumulative, first.event) == (0.0, 0.0, "baseline")
    assert (second.added, second.cumulative, second.event) == (600.0, 600.0, "growth")
    assert second.start_ns == 1 * S


def test_a_reset_counts_the_new_raw_value_and_never_goes_negative():
    ledger = CounterLedger()
    ledger.observe("tokens", 1_000.0, 1 * S)
    ledger.observe("tokens", 1_500.0, 2 * S)

    after_restart = ledger.observe("tokens", 40.0, 3 * S)

    assert after_restart.event == "reset"
    assert after_restart.added == 40.0
    assert after_restart.cumulative == 540.0


def test_a_changed_restart_marker_is_a_reset_even_when_the_value_grew():
    ledger = CounterLedger()
    ledger.observe("tokens", 100.0, 1 * S, marker=1_700_000_000.0)

    # The engine restarted and served more than before between two scrapes.
    grown_after_restart = ledger.observe("tokens", 250.0, 2 * S, marker=1_700_000_900.0)

    assert grown_after_restart.event == "reset"
    assert grown_after_restart.cumulative == 250.0


def test_a_wrap_of_a_counter_with_a_known_modulus_adds_across_the_top():
    ledger = CounterLedger()
    modulus = 2.0**32
    ledger.observe("reg", modulus - 100.0, 1 * S, modulus=modulus)

    wrapped = ledger.observe("reg", 50.0, 2 * S, modulus=modulus)

    assert wrapped.event == "wrap"
    assert wrapped.added == 150.0


def test_repeated_and_late_readings_add_nothing():
    ledger = CounterLedger()
    ledger.observe("tokens", 10.0, 1 * S)
    ledger.observe("tokens", 30.0, 3 * S)

    repeat = ledger.observe("tokens", 30.0, 3 * S)
    late = ledger.observe("tokens", 20.0, 2 * S)

    assert (repeat.event, repeat.added, repeat.cumulative) == ("repeat", 0.0, 20.0)
    assert (late.event, late.added, late.cumulative) == ("late", 0.0, 20.0)


def test_a_missing_reading_is_caught_up_by_the_next_one():
    ledger = CounterLedger()
    ledger.observe("tokens", 0.0, 1 * S)
    # Scrapes at 2 s and 3 s failed; nothing was observed.
    caught_up = ledger.observe("tokens", 900.0, 4 * S)

    assert caught_up.added == 900.0


def test_state_survives_a_restart_and_counts_what_happened_while_down(tmp_path):
    path = tmp_path / "state" / "ledger.json"
    before = CounterLedger(path)
    before.observe("gpu0.energy", 1_000_000.0, 1 * S)
    before.observe("gpu0.energy", 1_360_000.0, 2 * S)
    before.save()

    after = CounterLedger(path)
    # The agent was down for a while; the hardware counter kept counting.
    resumed = after.observe("gpu0.energy", 2_080_000.0, 600 * S)

    assert resumed.event == "growth"
    assert resumed.added == 720_000.0
    assert resumed.cumulative == 1_080_000.0
    assert resumed.start_ns == 1 * S


def test_an_unreadable_state_file_is_set_aside_and_baselines_start_fresh(tmp_path, caplog):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")

    ledger = CounterLedger(path)

    assert ledger.keys() == []
    assert (tmp_path / "ledger.json.broken").read_text() == "{not json"
    assert "unreadable" in caplog.text


def test_rebaseline_keeps_the_total_and_ignores_the_next_raw_value():
    ledger = CounterLedger()
    ledger.observe("gpu0.energy", 100.0, 1 * S)
    ledger.observe("gpu0.energy", 400.0, 2 * S)

    ledger.rebaseline("gpu0.energy")
    after_loss = ledger.observe("gpu0.energy", 9_999.0, 3 * S)
    later = ledger.observe("gpu0.energy", 10_099.0, 4 * S)

    assert (after_loss.event, after_loss.cumulative) == ("baseline", 300.0)
    assert (later.added, later.cumulative) == (100.0, 400.0)


def test_add_accumulates_measured_amounts_and_refuses_negative_ones():
    ledger = CounterLedger()
    ledger.add("gpu0.energy.integral", 12.5, 1 * S)
    total = ledger.add("gpu0.energy.integral", 7.5, 2 * S)

    assert total.cumulative == 20.0
    with pytest.raises(ValueError, match="negative"):
        ledger.add("gpu0.energy.integral", -1.0, 3 * S)


def test_saved_state_is_plain_json(tmp_path):
    path = tmp_path / "ledger.json"
    ledger = CounterLedger(path)
    ledger.observe("k", 1.0, 5)
    ledger.save()

    document = json.loads(path.read_text())

    assert document["series"]["k"] == {
        "cumulative": 0.0,
        "last_raw": 1.0,
        "last_ns": 5,
        "start_ns": 5,
        "marker": None,
        "resets": 0,
    }
