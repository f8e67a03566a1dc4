"""The tray's state, the notification policy and the ledger, as plain data: no Qt needed."""

from __future__ import annotations

from pathlib import Path

from lmgui.api.records import Instance, LoadResult, Model
from lmgui.core.instances import InstanceInfo
from lmgui.core.ledger import InstanceLedger
from lmgui.core.notices import NotificationPolicy
from lmgui.core.snapshot import Snapshot, diff
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.tray_state import build_tray_state, icon_name, quick_loads, tooltip

GB = 1_000_000_000


def model(key: str, *ids: str, size: int = 2 * GB, **kw: object) -> Model:
    return Model(
        key=key,
        type="llm",
        display_name=key.title(),
        size_bytes=size,
        params_string="4B",
        instances=tuple(Instance(i, key, {"context_length": 8192}) for i in ids),
        **kw,  # type: ignore[arg-type]
    )


def status(state: ConnectionState, message: str = "") -> PollStatus:
    return PollStatus(state, message, since=1_700_000_000.0, last_success=1_700_000_000.0)


# ----------------------------------------------------------------------------- tray state


def test_tray_state_from_the_snapshot_ledger_and_settings() -> None:
    snap = Snapshot.of([model("a/one", "a/one"), model("b/two"), model("c/three", "c/three:2")])
    infos = {"a/one": InstanceInfo(gpu_fraction=0.5, ttl_seconds=600, idle_deadline=1000.0)}
    state = build_tray_state(
        server="http://127.0.0.1:1234",
        snapshot=snap,
        status=status(ConnectionState.CONNECTED),
        infos=infos,
        favourites=["c/three", "gone/model"],
        recent=["b/two", "c/three"],
        now=900.0,
    )
    assert [i.instance_id for i in state.instances] == ["a/one", "c/three:2"]
    one, three = state.instances
    assert one.ttl_left == 100.0 and three.ttl_left is None
    assert one.vram_bytes is not None and three.vram_bytes is not None
    assert one.vram_bytes < three.vram_bytes, "half offloaded weights count half"
    assert state.quick_loads == [("c/three", "★ C/Three"), ("b/two", "B/Two")]
    assert icon_name(state) == "state-loaded"
    assert tooltip(state).splitlines()[1] == "2 instances loaded"


def test_an_unreadable_size_makes_the_tray_say_at_least() -> None:
    snap = Snapshot.of(
        [model("a/one", "a/one"), model("b/two", "b/two", size=0, malformed=("size_bytes",))]
    )
    state = build_tray_state(
        server="s", snapshot=snap, status=status(ConnectionState.CONNECTED), infos={}
    )
    assert state.instances[1].vram_bytes is None
    assert state.vram_text.startswith("at least ")
    assert "VRAM in use: about at least" in tooltip(state)


def test_offline_tooltip_says_since_when() -> None:
    state = build_tray_state(
        server="s", snapshot=Snapshot(), status=status(ConnectionState.UNREACHABLE), infos={}
    )
    assert icon_name(state) == "state-offline"
    assert tooltip(state).splitlines()[1].startswith("Unreachable since ")


def test_quick_loads_keep_each_model_once() -> None:
    names = {"a": "A", "b": "B"}
    assert quick_loads(names, ["a"], ["a", "b", "x"]) == [("a", "★ A"), ("b", "B")]


# ----------------------------------------------------------------------------- notifications


def test_offline_and_back_but_not_a_slow_poll_or_a_token() -> None:
    p = NotificationPolicy("http://lab:1234")
    assert p.status(status(ConnectionState.CONNECTED)) == []  # the first connect
    assert p.status(status(ConnectionState.SLOW)) == []
    assert p.status(status(ConnectionState.CONNECTED)) == []
    offline = p.status(status(ConnectionState.UNREACHABLE, "Cannot connect."))
    assert [(n.kind, n.key, n.title, n.body) for n in offline] == [
        ("server", "offline", "LM Studio is unreachable", "Cannot connect.")
    ]
    back = p.status(status(ConnectionState.CONNECTED))
    assert [(n.title, n.body) for n in back] == [
        ("LM Studio is back", "http://lab:1234 answers again.")
    ]
    assert p.status(status(ConnectionState.TOKEN_NEEDED)) == []
    assert p.status(status(ConnectionState.CONNECTED)) == [], "a token accepted is not a return"


def test_vanished_instances_with_their_reason() -> None:
    before = Snapshot.of([model("a/one", "a/one", "a/one:2", "a/one:3")])
    after = Snapshot.of([model("a/one")])
    d = diff(before, after)
    infos = {"a/one:2": InstanceInfo(ttl_seconds=60, idle_deadline=1000.0)}
    expected = {("removed", "a/one:3")}
    notices = NotificationPolicy("s").vanished(
        d, lambda kind, iid, key: (kind, iid) in expected, infos, now=999.5
    )
    assert [(n.key, n.body) for n in notices] == [
        (
            "a/one",
            "Unloaded without lmgui: an idle TTL, auto-evict of JIT loads, or another client.",
        ),
        ("a/one:2", "Its idle TTL ran out on the server."),
    ]


def test_load_notices() -> None:
    n = NotificationPolicy.loaded("a/one", LoadResult("a/one:2", load_time_seconds=3.21))
    assert (n.kind, n.title, n.body) == (
        "loaded",
        "Loaded a/one:2",
        "a/one is ready, loaded in 3.2 s.",
    )
    f = NotificationPolicy.load_failed("a/one", "Loading a/one failed: out of memory.")
    assert (f.kind, f.body) == ("load_failed", "Loading a/one failed: out of memory.")


# ----------------------------------------------------------------------------- ledger


def test_a_list_asked_for_before_a_load_finished_does_not_drop_it(tmp_path: Path) -> None:
    now = [1000.0]
    ledger = InstanceLedger(tmp_path / "l.json", wall=lambda: now[0])
    stale = Snapshot.of([model("a/one")])  # asked for at 999, before the load ended
    ledger.record_load(
        "a/one", "a/one", context_length=8192, gpu_fraction=1.0, ttl_seconds=None, enforced=False
    )
    assert not ledger.sync(stale, taken_at=999.0)
    assert "a/one" in ledger.entries
    assert ledger.sync(stale, taken_at=1001.0)  # a list asked for afterwards: it is gone
    assert "a/one" not in ledger.entries


def test_a_ledger_that_cannot_be_saved_says_so_once(tmp_path: Path) -> None:
    said: list[str] = []
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    ledger = InstanceLedger(blocked / "l.json", report=said.append)
    for n in range(3):
        ledger.record_load(
            f"a/one:{n}",
            "a/one",
            context_length=None,
            gpu_fraction=None,
            ttl_seconds=60,
            enforced=True,
        )
    assert len(said) == 1
    assert said[0].startswith(f"lmgui cannot save what it knows of loaded instances to {blocked}")
    assert said[0].endswith("TTL countdowns will not survive a restart.")
