from __future__ import annotations

import datetime as dt
import random

from hypothesis import given
from hypothesis import strategies as st

from gossamer.certs.rotation import renewal_time

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@given(st.integers(min_value=60, max_value=10**8), st.integers(min_value=0, max_value=2**32))
def test_renewal_inside_50_to_80_percent(lifetime, seed):
    end = START + dt.timedelta(seconds=lifetime)
    when = renewal_time(START, end, random.Random(seed))
    frac = (when - START) / (end - START)
    assert 0.5 <= frac <= 0.8


def test_renewals_are_spread():
    end = START + dt.timedelta(hours=24)
    rng = random.Random(7)
    times = {renewal_time(START, end, rng) for _ in range(50)}
    assert len(times) == 50
