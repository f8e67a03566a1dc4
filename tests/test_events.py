"""The timeline's events (core/events.py) and their store (core/event_store.py), without Qt:
who did what and why, in the words the list and ``lmgui events`` show, and the store's bounds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lmgui.api.records import Instance, Model
from lmgui.core import event_store
from lmgui.core.event_store import EventFilter, EventStore
from lmgui.core.events import Event, EventRecorder, Sample
from lmgui.core.instances import InstanceInfo
from lmgui.core.snapshot import Snapshot, diff
from lmgui.core.status import ConnectionState, PollStatus

NOW = 1_800_000_000.0
SERVER = "http://127.0.0.1:1234"


def model(key: str, *instances: Instance) -> Model:
    return Model(
        key=key, type="llm", display_name=key, size_bytes=2_500_000_000, instances=instances
    )


def inst(key: str, iid: str, **kw: object) -> Instance:
    return Instance(id=iid, model_key=key, config={"context_length": 8192}, **kw)  # type: ignore[arg-type]


def recorder() -> EventRecorder:
    return EventRecorder(SERVER, wall=lambda: NOW)


def nobody(kind: str, iid: str, key: str) -> bool:
    return False


def test_loads_and_unloads_name_who_did_them_and_why() -> None:
    before = Snapshot.of(
        [
            model("a/one", inst("a/one", "mine"), inst("a/one", "theirs")),
            model("b/two", inst("b/two", "idle", ttl_seconds=300.0, last_used=NOW - 301)),
        ]
    )
    after = Snapshot.of([model("a/one"), model("b/two")])
    lmgui_did = {("removed", "mine")}
    events = recorder().changed(
        diff(before, after), before, lambda k, i, key: (k, i) in lmgui_did, {}
    )
    said = {e.identifier: (e.kind, e.source, e.detail) for e in events}
    assert said == {
        "mine": ("unloaded", "lmgui", "unloaded by lmgui"),
        "theirs": ("unloaded", "other", "unloaded by another client"),
        "idle": ("unloaded", "server", "its idle TTL ran out"),
    }
    theirs = next(e for e in events if e.identifier == "theirs")
    assert theirs.what() == (
        "unloaded a/one as theirs (8k, about 3.3 GB): unloaded by another client"
    )


def test_an_instance_gone_as_another_appears_was_evicted() -> None:
    before = Snapshot.of([model("a/one", inst("a/one", "a/one")), model("b/two")])
    after = Snapshot.of([model("a/one"), model("b/two", inst("b/two", "b/two"))])
    events = recorder().changed(diff(before, after), before, nobody, {})
    assert [(e.kind, e.identifier, e.source, e.detail) for e in events] == [
        ("unloaded", "a/one", "server", "evicted when another load needed room"),
        ("loaded", "b/two", "other", None),
    ]
    assert events[1].what().endswith(", by another client")


def test_lmguis_own_ttl_deadline_counts_as_the_ttl() -> None:
    before = Snapshot.of([model("a/one", inst("a/one", "a/one"))])
    after = Snapshot.of([model("a/one")])
    infos = {"a/one": InstanceInfo(ttl_seconds=60, idle_deadline=NOW - 1)}
    (event,) = recorder().changed(diff(before, after), before, nobody, infos)
    assert (event.source, event.detail) == ("server", "its idle TTL ran out")


def test_offline_then_back_and_what_went_meanwhile_went_with_a_restart() -> None:
    rec = recorder()
    assert rec.status(PollStatus(ConnectionState.CONNECTED, "", NOW, NOW)) == []  # first connect
    (off,) = rec.status(PollStatus(ConnectionState.UNREACHABLE, "Cannot connect.", NOW, NOW))
    (back,) = rec.status(PollStatus(ConnectionState.CONNECTED, "", NOW, NOW))
    assert (off.kind, off.source, back.kind) == ("offline", "server", "online")
    assert off.what() == f"{SERVER} offline: Cannot connect."
    before = Snapshot.of([model("a/one", inst("a/one", "a/one"))])
    (gone,) = rec.changed(diff(before, Snapshot.of([model("a/one")])), before, nobody, {})
    assert gone.detail == "the server restarted"


def test_the_store_keeps_filters_and_bounds_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore(tmp_path / "events.sqlite3", wall=lambda: NOW)
    kept = store.add(
        [
            Event(NOW - 100 * 86400, SERVER, "loaded", "other", "a/one", "old"),
            Event(NOW - 60, SERVER, "loaded", "other", "a/one", "a/one", 8192),
            Event(NOW - 30, SERVER, "unloaded", "server", "a/one", "a/one", detail="its idle"),
            Event(NOW - 10, "http://lab:1234", "loaded", "lmgui", "b/two", "coder"),
        ]
    )
    assert [e.id for e in kept] == [1, 2, 3, 4]
    assert [e.identifier for e in store.events()] == ["coder", "a/one", "a/one", "old"]
    store.prune()  # older than 90 days goes
    assert store.count() == 3
    assert [e.kind for e in store.events(EventFilter(server=SERVER))] == ["unloaded", "loaded"]
    assert store.count(EventFilter(sources=frozenset({"other"}))) == 1
    assert store.count(EventFilter(model="COD")) == 1  # identifier, any case
    assert store.count(EventFilter(model="%")) == 0  # a literal, not a wildcard
    assert store.count(EventFilter(kinds=frozenset({"unloaded"}), since=NOW - 40)) == 1
    assert [e.id for e in store.after(2)] == [3, 4]
    assert store.position(2) == 2
    if os.name == "posix":
        assert stat.S_IMODE(Path(store.path).stat().st_mode) == 0o600

    # The count bound: only the newest MAX_EVENTS stay.
    monkeypatch.setattr(event_store, "MAX_EVENTS", 5)
    store.add([Event(NOW, SERVER, "loaded", "other", "a/one", f"i{n}") for n in range(10)])
    store.prune()
    assert [e.identifier for e in store.events()] == [f"i{n}" for n in range(9, 4, -1)]


def test_chart_samples_are_kept_a_minute_apart_unless_the_count_changes(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite3", wall=lambda: NOW)
    for t, n in ((0, 2), (10, 2), (20, 3), (30, 3), (90, 3)):
        store.sample(Sample(NOW + t, SERVER, n * 10**9, n))
    assert [(s.at - NOW, s.instances) for s in store.samples(SERVER, NOW)] == [
        (0, 2),
        (20, 3),
        (90, 3),
    ]
