"""The Redis transport, hardened against the broker going away while the worker holds tasks.

When Redis dies, Celery closes the worker's channel; kombu's Redis QoS then tries to put the
unacknowledged task messages back, through a connection that is already gone, and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``; a task that was running
meanwhile later acknowledges its message on that dead channel, with the same result. Both escape
Celery's connection-error handling ("Unrecoverable error") and the whole worker stops instead of
reconnecting (seen in ``tests/faults/test_broker_faults.py``; the same class of kombu bug is
reported upstream as celery/kombu#582 and #970).

Here restore, ack and reject do nothing on a dead connection but log: the messages stay in
Redis' unacked hash if Redis kept them, and its visibility-timeout sweep redelivers them; if
Redis came back empty they are gone, which costs nothing, because a task only says "look now"
(running it again finds nothing left to do) and beat says it again within a minute: the
database is the queue.

``install()`` points kombu's ``redis://`` and ``rediss://`` aliases at this transport, so broker
URLs and log lines stay plain ``redis://``.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """Kombu's Redis QoS, except that nothing it does on a dead connection kills the worker."""

    def _detached(self) -> bool:
        transport = getattr(self.channel, "connection", None)
        return getattr(transport, "client", None) is None

    def restore_unacked(self, client: Any = None) -> Any:
        if client is None and self._detached():
            log.warning(
                "broker connection already closed: leaving %d unacknowledged task message(s) "
                "to Redis' visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return super().restore_unacked(client)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: Any) -> None:
        # A task that outlived its channel (Redis went away while it ran): its message cannot be
        # acknowledged any more; Redis redelivers it after the visibility timeout, and running a
        # "look now" task again finds nothing left to do.
        if self._detached():
            log.warning(
                "broker connection closed: task message %s left unacknowledged", delivery_tag
            )
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]  # local only
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._detached():
            log.warning("broker connection closed: task message %s left unrejected", delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            return
        super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make ``redis://`` and ``rediss://`` broker URLs use :class:`Transport`."""
    import kombu.transport

    # kombu caches each name's class on first use: forget what was resolved before this ran.
    cache: dict[str | None, Any] = getattr(kombu.transport, "_transport_cache", {})
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        cache.pop(scheme, None)
