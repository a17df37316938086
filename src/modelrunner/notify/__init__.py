"""Telling people what happened: subscriptions, the outbox of deliveries, e-mail, signed webhooks
and digests. See ``outbox.py`` for how a notification is created exactly once and
``deliveries.py`` for how it is sent."""
