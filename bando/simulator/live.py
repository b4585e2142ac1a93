"""Live producer: play simulated HCMC activity into Kafka at a chosen pace.

Why it paces by event time: the scorer is event-time driven, so what a demo needs is a city
day compressed into minutes (``speed`` simulated seconds per wall second). ``rate`` sets the
volume so that working-day office hours arrive at about ``rate`` messages per wall second, and
it is also a ceiling; nights and weekends are quieter, as in the real city. An event is never
sent before its own ``occurred_at`` has passed on the wall clock (the scorer rejects future
timestamps), so a run that starts in the past fast-forwards, then settles into real time once
it catches up.

``clock.tick`` has no ``unit_id`` and so no key: each tick is sent to every partition of the
topic, explicitly, with a per-partition ``event_id`` (``<id>-p<partition>``) so that no
de-duplication can swallow the copy that a quiet partition needs to advance its event time.
The producer is idempotent (``acks=all``) so broker retries never duplicate a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bando.kafka_auth import client_kwargs
from bando.settings import Settings
from bando.simulator.generate import Generator, format_time, parse_time
from bando.simulator.profiles import day_of, day_start, is_working_day, make_profiles
from bando.simulator.stream import Chaos, messages

log = logging.getLogger(__name__)


@dataclass
class LiveStats:
    sent: int = 0  # messages handed to the producer
    acked: int = 0  # messages the broker acknowledged
    failed: int = 0
    event_time: int = 0  # epoch seconds of the latest event sent


# An ordinary week (no holiday): lifecycles started Monday fill Thursday and Friday in.
_PROBE_START, _PROBE_END, _PROBE_SCALE = "2024-03-04", "2024-03-08T17:00:00+07:00", 0.25
_PROBE_BUSY = ((parse_time("2024-03-07T08:00:00"), parse_time("2024-03-07T17:00:00")),
               (parse_time("2024-03-08T08:00:00"), parse_time("2024-03-08T17:00:00")))


def busy_rate(catalog: Iterable[Mapping[str, str]], seed: int | str = 0) -> float:
    """Events per simulated second during working-day office hours (08:00-17:00) at scale 1,
    measured on a sample week: the city's busiest regular level."""
    count = 0
    (a0, a1), (b0, b1) = _PROBE_BUSY
    for t, _ in Generator(profiles=make_profiles(catalog, seed), start=_PROBE_START,
                          end=_PROBE_END, seed=seed, rate_scale=_PROBE_SCALE,
                          tick_every=0).events():
        if a0 <= t < a1 or b0 <= t < b1:
            count += 1
    return count / ((a1 - a0) + (b1 - b0)) / _PROBE_SCALE


def scale_for_rate(catalog: Iterable[Mapping[str, str]], rate: float, speed: float,
                   seed: int | str = 0) -> float:
    """The ``rate_scale`` at which office hours produce about ``rate`` messages per wall second
    at ``speed``; nights and weekends are quieter, as in the city."""
    per_sim_second = busy_rate(catalog, seed)
    if per_sim_second <= 0 or speed <= 0:
        raise ValueError("cannot pace: no activity or no speed")
    return rate / (per_sim_second * speed)


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def produce(
    catalog: Iterable[Mapping[str, str]],
    *,
    bootstrap: str,
    topic: str,
    speed: float = 600.0,
    rate: float | None = 2000.0,
    rate_scale: float | None = None,
    start: str | int | None = None,
    end: str | int | None = None,
    duration: float | None = None,
    seed: int | str = 0,
    tick_every: int = 900,
    chaos: Chaos | None = None,
    linger_ms: int = 20,
    create_topic: bool = True,
    partitions: int = 4,
    replication: int = 1,
    settings: Settings | None = None,
    stop: asyncio.Event | None = None,
    stats: LiveStats | None = None,
) -> int:
    """Produce until ``end`` (event time), ``duration`` (wall seconds) or ``stop`` is set;
    return the number of messages the broker acknowledged.

    ``rate_scale`` wins over ``rate``; with neither, the city's natural volume is used.
    ``start`` defaults to 07:00 of the working day a week ago (fast-forward, then real time).
    """
    from aiokafka import AIOKafkaProducer

    catalog = list(catalog)
    settings = settings or Settings()
    stop = stop or asyncio.Event()
    stats = stats if stats is not None else LiveStats()
    now = time.time()
    if start is None:  # 07:00 of a working day a week ago: a run opens with a busy morning
        day = day_of(int(now)) - 7
        while not is_working_day(day):
            day -= 1
        t0 = day_start(day) + 7 * 3600
    else:
        t0 = parse_time(start)
    if rate_scale is None:
        rate_scale = scale_for_rate(catalog, rate, speed, seed) if rate else 1.0
    gen = Generator(catalog, start=t0, end=end, seed=seed, rate_scale=rate_scale,
                    tick_every=tick_every)
    log.info("simulating from %s at x%.0f, scale %.3f (run %s) into %s",
             format_time(t0), speed, rate_scale, gen.tag, topic)
    if create_topic and not settings.kafka_username:
        from bando.infra import create_topics_async

        await create_topics_async(bootstrap, [topic], partitions, replication,
                                  {"retention.ms": "-1"}, security=client_kwargs(settings))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="bando-simulator", acks="all",
        enable_idempotence=True, linger_ms=linger_ms, max_batch_size=256 * 1024,
        **client_kwargs(settings))  # the secured cluster's own mechanism (SCRAM by default)
    await producer.start()

    def on_done(fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            stats.failed += 1
            if stats.failed <= 5:
                log.error("delivery failed: %s", "cancelled" if fut.cancelled()
                          else fut.exception())
        else:
            stats.acked += 1

    try:
        parts = sorted(await producer.partitions_for(topic))
        loop = asyncio.get_running_loop()
        mono0, wall0 = loop.time(), time.time()
        deadline = mono0 + duration if duration is not None else None
        caught_up = False
        interval = 1.0 / rate if rate else 0.0
        cap_at = mono0  # --rate is also a ceiling: never send faster than that
        next_report = mono0 + 10.0
        for t, key, value in messages(gen.events(), chaos, seed):
            if stop.is_set():
                break
            if t > stats.event_time:
                stats.event_time = t
            # Simulated pace, but never ahead of the wall clock (no future timestamps).
            paced = mono0 + (stats.event_time - t0) / speed
            real = mono0 + (stats.event_time - wall0)
            if real > paced and not caught_up:
                caught_up = True
                log.info("simulation caught up with the wall clock: real time from now on")
            target = max(paced, real, cap_at)
            current = loop.time()
            if deadline is not None and max(target, current) >= deadline:
                break
            if target - current > 0.005:  # batch small waits: sleeping costs more than 5 ms
                await _sleep_or_stop(stop, target - current)
                if stop.is_set():
                    break
            if interval:
                cap_at = max(cap_at, current) + interval * (len(parts) if key is None else 1)
            if key is None:  # a clock.tick: one copy per partition
                tick = orjson.loads(value)
                base_id = tick["event_id"]
                for p in parts:
                    tick["event_id"] = f"{base_id}-p{p}"
                    fut = await producer.send(topic, orjson.dumps(tick), partition=p)
                    fut.add_done_callback(on_done)
                    stats.sent += 1
            else:
                fut = await producer.send(topic, value, key=key)
                fut.add_done_callback(on_done)
                stats.sent += 1
            if current >= next_report:
                next_report = current + 10.0
                log.info("sent %d messages, event time %s", stats.sent,
                         format_time(stats.event_time))
    finally:
        await producer.stop()  # flushes what is buffered
    log.info("produced %d messages (%d failed)", stats.acked, stats.failed)
    return stats.acked


def run_live(catalog: Iterable[Mapping[str, str]], **kwargs: Any) -> int:
    """``produce`` in a fresh event loop; Ctrl-C or SIGTERM stops it gracefully."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            return await produce(catalog, stop=stop, **kwargs)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())
