"""Times as people type them: what is read, and what is refused with a one-line reason."""

import pytest

from wattledger.timeutil import TimeFormatError, month_bounds, parse_time

NOW = 1_764_000_000  # 2025-11-24T16:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2025-11-24T16:00", NOW),
        ("2025-11-24T17:00+01:00", NOW),
        ("2025-11-24T16:00Z", NOW),
        ("2025-11", 1_761_955_200),
        ("24h", NOW - 86_400),
        ("2w", NOW - 14 * 86_400),
        ("now", NOW),
        ("1970-01-01", 0),
    ],
)
def test_times_people_type(text, seconds):
    assert parse_time(text, now=NOW) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("99999999d", "'99999999d' reaches back before 1970-01-01"),
        ("20500w", "reaches back before 1970-01-01"),
        ("1969-12-31", "'1969-12-31' is outside the times wattledger keeps"),
        ("9999-06-01", "'9999-06-01' is outside the times wattledger keeps"),
        ("0001-01-01", "is outside the times wattledger keeps"),
        ("1900-01", "'1900-01' is outside the times wattledger keeps"),
        ("2026-13", "'2026-13' has no month 13; use 01 to 12"),
        ("2026-00", "'2026-00' has no month 0"),
        ("tomorrow", "cannot read 'tomorrow' as a time"),
    ],
)
def test_absurd_times_are_refused_in_one_line(text, message):
    with pytest.raises(TimeFormatError) as info:
        parse_time(text, now=NOW)

    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_month_bounds_of_december_end_in_january():
    assert month_bounds("2025-12") == (1_764_547_200, 1_767_225_600)
