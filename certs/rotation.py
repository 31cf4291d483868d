"""When to renew a leaf: at a random point between 50% and 80% of its lifetime.

Spreading renewals avoids every sidecar of a fleet asking at once, and leaves 20% of
the lifetime to retry if the control plane is briefly away.
"""

from __future__ import annotations

import datetime as dt
import random

RENEW_FROM = 0.5
RENEW_UNTIL = 0.8


def renewal_time(
    not_before: dt.datetime, not_after: dt.datetime, rng: random.Random | None = None
) -> dt.datetime:
    """A random moment in [50%, 80%] of the validity window."""
    lifetime = not_after - not_before
    fraction = (rng or random.SystemRandom()).uniform(RENEW_FROM, RENEW_UNTIL)
    return not_before + lifetime * fraction
