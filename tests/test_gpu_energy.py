"""Power integration, the counter cross-check, power curves and MIG shares."""

import pytest

from wattledger.agent.gpu.energy import CrossCheck, PowerIntegrator
from wattledger.agent.gpu.mig import MigSlot, mig_shares
from wattledger.agent.gpu.power_curve import PowerCurve

S = 1_000_000_000


def test_trapezoid_between_samples():
    integrator = PowerIntegrator()

    first = integrator.add(0, 100.0)
    second = integrator.add(2 * S, 300.0)
    third = integrator.add(3 * S, 300.0)

    assert (first, second, third) == (None, 400.0, 300.0)


def test_gap_longer_than_allowed_is_not_bridged():
    integrator = PowerIntegrator(max_gap_s=30)

    integrator.add(0, 500.0)
    bridged = integrator.add(30 * S, 500.0)
    too_long = integrator.add(61 * S, 500.0)
    after = integrator.add(62 * S, 500.0)

    assert (bridged, too_long, after) == (15_000.0, None, 500.0)
    assert integrator.gaps == 1


def test_repeated_or_late_samples_add_nothing():
    integrator = PowerIntegrator()
    integrator.add(5 * S, 100.0)

    assert integrator.add(5 * S, 100.0) is None
    assert integrator.add(4 * S, 100.0) is None
    assert integrator.add(6 * S, 100.0) == 100.0


def test_cross_check_flags_only_a_large_disagreement_over_a_full_window():
    check = CrossCheck(window_s=60, tolerance=0.2, min_joules=100)

    check.add(0, None, None)
    quiet = [check.add(t * S, 1_000.0, 900.0) for t in range(10, 61, 10)]
    check.add(70 * S, 1_000.0, 700.0)
    loud = [check.add(t * S, 1_000.0, 700.0) for t in range(80, 121, 10)]

    assert quiet == [None] * 6  # 6 000 J vs 5 400 J: 10 % apart
    assert loud[:-1] == [None] * 4
    assert (loud[-1].counter_joules, loud[-1].integral_joules) == (6_000.0, 4_200.0)
    assert loud[-1].start_ns == 60 * S and loud[-1].ratio == pytest.approx(6_000 / 4_200)


def test_cross_check_window_restarts_on_a_missing_interval():
    check = CrossCheck(window_s=60)

    check.add(0, None, None)
    for t in range(10, 51, 10):
        check.add(t * S, 1_000.0, 100.0)
    check.add(55 * S, None, 50.0)  # a counter reset: the window starts again at 55 s

    assert check.add(60 * S, 500.0, 50.0) is None
    assert check.add(115 * S, 5_000.0, 500.0) is not None


def test_cross_check_ignores_tiny_windows():
    check = CrossCheck(window_s=60, min_joules=100)
    check.add(0, None, None)

    assert check.add(60 * S, 50.0, 10.0) is None


def test_power_curve_integrals():
    flat = PowerCurve.constant(600.0)
    ramp = PowerCurve.ramp(0, 100.0, 100, 400.0)
    kinked = PowerCurve([(0, 100.0), (50, 400.0)])

    assert flat.joules(0, 3600) == 2_160_000.0
    assert ramp.joules(0, 100) == 25_000.0
    assert ramp.joules(-10, 0) == 1_000.0  # flat before the first point
    assert ramp.joules(100, 110) == 4_000.0  # and after the last
    assert kinked.joules(40, 60) == 7_700.0
    assert ramp.watts(25) == 175.0


def test_power_curve_needs_a_point():
    with pytest.raises(ValueError, match="at least one"):
        PowerCurve([])


def _slots(*specs):
    return [MigSlot(f"MIG-{i}", gi, gs, cs) for i, (gi, gs, cs) in enumerate(specs)]


def test_mig_shares_by_slices():
    shares, method = mig_shares(_slots((1, 3, 3), (2, 2, 2), (3, 2, 2)))

    assert method == "slices"
    assert list(shares.values()) == [3 / 7, 2 / 7, 2 / 7]


def test_mig_shares_by_activity_weighted_by_size():
    slots = _slots((1, 3, 3), (2, 2, 2), (3, 2, 2))

    shares, method = mig_shares(slots, {1: 50.0, 2: 100.0, 3: 0.0})

    assert method == "activity"
    assert list(shares.values()) == [150 / 350, 200 / 350, 0.0]


def test_mig_shares_fall_back_to_slices_when_idle_or_incomplete():
    slots = _slots((1, 3, 3), (2, 4, 4))

    assert mig_shares(slots, {1: 0.0, 2: 0.0}) == ({"MIG-0": 3 / 7, "MIG-1": 4 / 7}, "slices")
    assert mig_shares(slots, {1: 80.0})[1] == "slices"


def test_compute_instances_split_their_gpu_instance():
    # One 3g instance split into a 1c and a 2c compute instance, next to a 4g instance.
    shares, _ = mig_shares(_slots((1, 3, 1), (1, 3, 2), (2, 4, 4)))

    assert shares == {"MIG-0": 1 / 7, "MIG-1": 2 / 7, "MIG-2": 4 / 7}
