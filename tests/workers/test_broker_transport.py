"""The hardened Redis transport (``workers.broker``) against a real, private ``redis-server``.

The hazard, as Celery meets it when Redis dies: the connection is torn down (the transport
detached from it) before the channel holding unacknowledged task messages is closed, and
kombu's stock QoS then tries to restore those messages through the missing connection
(AttributeError: 'NoneType' object has no attribute 'hostname'), which kills the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from tests.faults.procs import RedisServer
from tests.faults.procs import redis_server as redis_server
from workers import broker

QUEUE = Queue("refseq-transport-test", Exchange("refseq-transport-test"), "t")


@pytest.fixture
def installed() -> Iterator[None]:
    import kombu.transport
    from kombu.transport import TRANSPORT_ALIASES, get_transport_cls

    before = dict(TRANSPORT_ALIASES)
    get_transport_cls("redis")  # resolved (and cached) before install: install must win
    broker.install()
    try:
        yield
    finally:
        TRANSPORT_ALIASES.clear()
        TRANSPORT_ALIASES.update(before)
        kombu.transport._transport_cache.clear()


def _holding_one_unacked(url: str, transport: Any) -> tuple[Connection, Any]:
    """A consumer connection that has received one task message and not acknowledged it."""
    with Connection(url) as producer_conn:
        producer_conn.Producer().publish(
            {"task": "look now"}, exchange=QUEUE.exchange, routing_key="t", declare=[QUEUE]
        )
    conn = Connection(url, transport=transport)
    received: list[Any] = []
    conn.Consumer([QUEUE], callbacks=[lambda body, message: received.append(message)]).consume()
    conn.drain_events(timeout=5)
    assert len(received) == 1 and len(conn.default_channel.qos._delivered) == 1
    return conn, received[0]


def _lose_the_connection(conn: Connection) -> None:
    """What Celery's cleanup leaves when Redis vanished: the transport detached, the channel
    with its unacknowledged message not yet closed."""
    conn._do_close_transport()


def test_redis_urls_resolve_to_the_hardened_transport(installed: None) -> None:
    assert isinstance(Connection("redis://127.0.0.1:1/0").transport, broker.Transport)
    assert Connection("redis://127.0.0.1:1/0").as_uri().startswith("redis://")


def test_the_stock_transport_crashes_closing_a_channel_after_losing_its_connection(
    redis_server: RedisServer,
) -> None:
    conn, message = _holding_one_unacked(redis_server.url(), kombu_redis.Transport)
    _lose_the_connection(conn)
    with pytest.raises(AttributeError, match="hostname"):
        conn.default_channel.close()
    with pytest.raises(AttributeError):  # the task that was running finishes: ack
        message.ack()


def test_the_hardened_transport_leaves_the_message_to_the_visibility_timeout(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn, message = _holding_one_unacked(redis_server.url(), broker.Transport)
    _lose_the_connection(conn)
    with caplog.at_level(logging.WARNING, logger="workers.broker"):
        conn.default_channel.close()  # no exception: the worker carries on and reconnects
        message.ack()  # the task that was running finishes: nothing to do but say so
    assert "leaving 1 unacknowledged task message(s)" in caplog.text
    assert "left unacknowledged" in caplog.text
    client = redis_server.client()
    try:  # still held by Redis, where its visibility-timeout sweep will find it
        assert client.hlen("unacked") == 1 and client.zcard("unacked_index") == 1
        assert client.llen("refseq-transport-test") == 0
    finally:
        client.close()


def test_with_the_connection_alive_it_acknowledges_as_before(
    redis_server: RedisServer,
) -> None:
    conn, message = _holding_one_unacked(redis_server.url(), broker.Transport)
    message.ack()
    client = redis_server.client()
    try:
        assert client.hlen("unacked") == 0 and client.llen("refseq-transport-test") == 0
    finally:
        client.close()
        conn.release()


def test_with_the_connection_alive_it_restores_as_before(
    redis_server: RedisServer,
) -> None:
    conn, _ = _holding_one_unacked(redis_server.url(), broker.Transport)
    conn.release()  # a normal close: the message goes straight back to its queue
    client = redis_server.client()
    try:
        assert client.llen("refseq-transport-test") == 1 and client.hlen("unacked") == 0
    finally:
        client.close()
