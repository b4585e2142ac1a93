"""Kafka connection security from ``Settings``, in one place for every Bando client.

Why one helper: the worker (faust), the board writer, the notifier, the simulator and the
topic tools all connect to the same secured cluster, and a client that silently falls back
to PLAINTEXT (or to another SASL mechanism) is refused by the broker with an unhelpful
timeout. The rule is simple: no username means PLAINTEXT; a username means SASL with
``kafka_sasl_mechanism`` (SCRAM-SHA-256 by default) over ``kafka_security_protocol``
(SASL_PLAINTEXT by default, SASL_SSL for a broker reached over a network).

The password is passed to the client and nowhere else: these dicts must never be logged
(use :func:`describe` for a log line).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bando.settings import Settings

if TYPE_CHECKING:
    import faust

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def security_protocol(settings: Settings) -> str:
    """The protocol in force: the configured one, else SASL_PLAINTEXT when a username is set."""
    protocol = (settings.kafka_security_protocol or "").strip().upper()
    if not protocol:
        protocol = "SASL_PLAINTEXT" if settings.kafka_username else "PLAINTEXT"
    if protocol not in PROTOCOLS:
        raise ValueError(f"kafka_security_protocol {protocol!r} is not one of "
                         f"{', '.join(PROTOCOLS)}")
    if protocol.startswith("SASL"):
        if not settings.kafka_username:
            raise ValueError(f"{protocol} needs BANDO_KAFKA_USERNAME")
        if settings.kafka_sasl_mechanism not in MECHANISMS:
            raise ValueError(f"kafka_sasl_mechanism {settings.kafka_sasl_mechanism!r} is not "
                             f"one of {', '.join(MECHANISMS)}")
    return protocol


def _ssl_context(settings: Settings) -> Any:
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=settings.kafka_ssl_cafile or None)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``/``Consumer``/``AdminClient`` (not including
    ``bootstrap_servers``); empty for PLAINTEXT, so ``**client_kwargs(s)`` is always safe."""
    protocol = security_protocol(settings)
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        kwargs.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_username,
                      sasl_plain_password=settings.kafka_password)
    if protocol.endswith("SSL"):
        kwargs["ssl_context"] = _ssl_context(settings)
    return kwargs


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """``broker_credentials`` for ``faust.App``; None for PLAINTEXT (faust's default)."""
    protocol = security_protocol(settings)
    if protocol == "PLAINTEXT":
        return None
    import faust

    context = _ssl_context(settings) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=settings.kafka_username,
                                 password=settings.kafka_password,
                                 mechanism=settings.kafka_sasl_mechanism,
                                 ssl_context=context)


def describe(settings: Settings) -> str:
    """A loggable summary (``SASL_PLAINTEXT/SCRAM-SHA-256 as bando-worker``), no secret."""
    protocol = security_protocol(settings)
    if not protocol.startswith("SASL"):
        return protocol
    return f"{protocol}/{settings.kafka_sasl_mechanism} as {settings.kafka_username}"
