"""What a subscription can ask for, and the states a delivery goes through.

A delivery of a notification::

    pending -> sending -> delivered
                       \\-> pending (a retry, after a backoff)  -> ... -> failed (no attempts left)
    pending -> cancelled (its subscription was removed)

An item held for a digest::

    held -> digested (in the digest mail of ``digest_id``)
    held -> cancelled (its subscription was removed)
"""

from __future__ import annotations

from enum import StrEnum

from modelrunner.engine.states import RunStatus


class NotifyOn(StrEnum):
    ALL = "all"  # every top-level run of the model (or the run) that ends
    FAILURES = "failures"  # runs that end failed or timed_out
    RESULTS_CHANGED = "results_changed"  # successes whose outputs differ from the previous result


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    DIGEST = "digest"


class DeliveryKind(StrEnum):
    EVENT = "event"  # one event to one subscription
    DIGEST = "digest"  # one summary mail to one user


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HELD = "held"
    DIGESTED = "digested"


# The run states a notification is about: a run that ended. Runs on their way (queued, running,
# retried after a lost attempt) notify nobody.
NOTIFIED_RUN_STATES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED})
FAILURE_RUN_STATES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


def wants(notify_on: NotifyOn, status: RunStatus, results_changed: bool) -> bool:
    """Whether a subscription asking for ``notify_on`` hears of a run that ended in ``status``."""
    if notify_on == NotifyOn.ALL:
        return True
    if notify_on == NotifyOn.FAILURES:
        return status in FAILURE_RUN_STATES
    return status == RunStatus.SUCCEEDED and results_changed
