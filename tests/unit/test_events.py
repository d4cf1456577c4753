"""The event bus: who wants which kinds, as subscribers come and go."""

from __future__ import annotations

from brace.events import AttemptEnded, EventBus, Hedged, Retried


def test_wants_follows_subscribe_and_unsubscribe() -> None:
    bus = EventBus()
    assert not bus.wants(AttemptEnded) and not bus.active
    off_retried = bus.subscribe(lambda e: None, kinds=frozenset({Retried}))
    assert bus.wants(Retried) and not bus.wants(AttemptEnded)
    off_all = bus.subscribe(lambda e: None)  # every kind
    assert bus.wants(AttemptEnded) and bus.wants(Hedged)
    off_all()
    assert bus.wants(Retried) and not bus.wants(AttemptEnded)
    off_hedged = bus.subscribe(lambda e: None, kinds=frozenset({Hedged}))
    assert bus.wants(Hedged) and bus.wants(Retried)
    off_retried()
    assert bus.wants(Hedged) and not bus.wants(Retried)
    off_hedged()
    assert not bus.wants(Hedged) and not bus.active


def test_emit_reaches_only_the_kinds_asked_for() -> None:
    bus = EventBus()
    got: list[object] = []
    bus.subscribe(got.append, kinds=frozenset({Hedged}))
    bus.emit(Retried("r1", "g", "g-a", "rate_limited", 0.5, 1))
    hedged = Hedged("r1", "g", 0.2)
    bus.emit(hedged)
    assert got == [hedged]
