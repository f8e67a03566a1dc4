"""The tray's state, the notification policy and the ledger, as plain data: no Qt needed."""

from __future__ import annotations

from pathlib import Path

from lmgui.api.records import Instance, LoadResult, Model
from lmgui.core.format import (
    busy_unload_question,
    gpu_offload_text,
    local_time,
    status_text,
)
from lmgui.core.instances import InstanceInfo
from lmgui.core.ledger import InstanceLedger
from lmgui.core.notices import NotificationPolicy
from lmgui.core.snapshot import Snapshot, diff
from lmgui.core.status import ConnectionState, PollStatus
from lmgui.core.tray_state import (
    activity_summary,
    build_tray_state,
    icon_name,
    quick_loads,
    tooltip,
)

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


def test_instances_another_app_loaded_are_said_and_lmguis_own_are_not() -> None:
    before = Snapshot.of([model("a/one", "a/one"), model("b/two")])
    after = Snapshot.of([model("a/one", "a/one", "a/one:2"), model("b/two", "coder")])
    expected = {("added", "a/one:2")}  # lmgui's own load
    notices = NotificationPolicy.appeared(
        diff(before, after), lambda kind, iid, key: (kind, iid) in expected
    )
    assert [(n.kind, n.key, n.title) for n in notices] == [
        ("appeared", "coder", "coder was loaded by another app")
    ]
    assert notices[0].body.startswith("b/two: loaded without lmgui")


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


# ------------------------------------------------------------------------ the SDK channel's facts

NOW = 1_700_000_000.0


def sdk(iid: str, key: str = "a/one", **kw: object) -> Instance:
    """An instance as a server with LM Studio's SDK channel lists it."""
    return Instance(iid, key, {"context_length": 8192}, **kw)  # type: ignore[arg-type]


def sdk_model(key: str, *instances: Instance) -> Model:
    return Model(key=key, type="llm", display_name=key, size_bytes=2 * GB, instances=instances)


def test_how_the_servers_facts_are_written() -> None:
    assert [gpu_offload_text(f) for f in (1.0, 0.0, 0.5, 0.999, 0.001, None, 1.5)] == [
        "max",
        "off",
        "50 %",
        "99 %",
        "1 %",
        "-",
        "?",
    ]
    # LM Studio's ``queued`` counts the request in progress: only the rest wait.
    assert status_text("generating", 1) == "generating"
    assert status_text("generating", 3) == "generating (+2 queued)"
    assert status_text("processingPrompt", 0) == "reading prompt"
    assert status_text("computingEmbedding", None) == "embedding"
    assert status_text("idle", None) == "idle"
    assert status_text(None, None) == "-"
    assert status_text(None, 3) == "3 queued"
    assert local_time(NOW - 20, NOW).count(":") == 2  # today: the time alone
    assert local_time(NOW - 3 * 86400, NOW).count("-") == 2  # another day: with its date
    assert local_time(float("nan"), NOW) == "?"


def test_the_question_before_unloading_what_is_answering() -> None:
    gen = sdk("qwen-1", status="generating")
    prompt = sdk("q:2", status="processingPrompt", queued=2)
    waiting = sdk("q:3", status="idle", queued=2)
    idle = sdk("q:4", status="idle")
    assert busy_unload_question([gen, idle]) == (
        "qwen-1 is generating an answer; unload it anyway?"
    )
    assert busy_unload_question([gen, prompt, waiting]) == (
        "qwen-1 is generating an answer, q:2 is reading a prompt (1 more waiting) and "
        "q:3 has 2 requests waiting; unload them anyway?"
    )
    assert busy_unload_question([idle, sdk("plain")]) is None


def test_the_tray_shows_the_servers_countdown_and_who_is_answering() -> None:
    snap = Snapshot.of(
        [
            sdk_model(
                "a/one",
                sdk("qwen-1", ttl_seconds=300.0, last_used=NOW - 20, status="generating"),
                sdk("q:2", status="processingPrompt", queued=1),
                sdk("q:3", status="idle", gpu_offload=0.5),
                sdk("q:4"),
            )
        ]
    )
    infos = {
        # lmgui's own countdown is the fallback: the server's wins where it has one.
        "qwen-1": InstanceInfo(ttl_seconds=600, idle_deadline=NOW + 600, enforced_by_lmgui=True),
        "q:4": InstanceInfo(ttl_seconds=600, idle_deadline=NOW + 100, enforced_by_lmgui=True),
        "q:3": InstanceInfo(gpu_fraction=1.0),
    }
    state = build_tray_state(
        server="s",
        snapshot=snap,
        status=status(ConnectionState.CONNECTED),
        infos=infos,
        now=NOW,
    )
    one, two, three, four = state.instances
    # Busy: the server's idle clock has not started, so its whole TTL is left.
    assert (one.ttl_left, four.ttl_left, two.ttl_left) == (300.0, 100.0, None)
    assert (one.busy, two.busy, three.busy, four.busy) == (True, True, False, False)
    assert one.label == "qwen-1  (8k ctx, 2.7 GB) ● generating, TTL 5:00 once idle"
    assert two.label == "q:2  (8k ctx, 2.7 GB) ● reading prompt"  # queued counts it too
    assert three.label.startswith("q:3  (8k ctx, ") and "●" not in three.label
    assert four.label.endswith(", unloads in 1:40")
    assert three.vram_bytes is not None and four.vram_bytes is not None
    assert three.vram_bytes < four.vram_bytes, "the server's half offload wins over the ledger's"
    assert activity_summary(state.instances) == "1 generating, 1 reading prompt"
    assert tooltip(state).splitlines()[1] == ("4 instances loaded, 1 generating, 1 reading prompt")


# ----------------------------------------------------------------------------- lmgui's TTL


def enforced_ledger(tmp_path: Path, now: list[float], *ids: str) -> InstanceLedger:
    ledger = InstanceLedger(tmp_path / "l.json", wall=lambda: now[0])
    for iid in ids:
        ledger.record_load(
            iid, "a/one", context_length=8192, gpu_fraction=None, ttl_seconds=60, enforced=True
        )
    return ledger


def test_lmgui_never_unloads_what_the_server_keeps_a_ttl_for_or_is_busy(tmp_path: Path) -> None:
    now = [NOW]
    ledger = enforced_ledger(tmp_path, now, "plain", "server-ttl", "busy", "queued")
    now[0] += 61
    polled = [
        sdk("plain"),  # a server without the SDK channel: lmgui's TTL applies
        sdk("server-ttl", ttl_seconds=600.0),
        sdk("busy", status="generating"),
        sdk("queued", status="idle", queued=1),
    ]
    assert ledger.expired(polled) == ["plain"]
    assert sorted(ledger.expired()) == ["busy", "plain", "queued", "server-ttl"]  # nothing said


def test_a_use_the_server_reports_starts_lmgui_s_idle_timer_again(tmp_path: Path) -> None:
    now = [NOW]
    ledger = enforced_ledger(tmp_path, now, "used-while-away", "used-later", "not-used")
    # First look: a last use later than the ledger's counts (lmgui was not running then); one
    # from before (the load itself) does not.
    now[0] += 50
    polled = [
        sdk("used-while-away", last_used=NOW + 40),
        sdk("used-later", last_used=NOW - 1),
        sdk("not-used", last_used=NOW - 1),
    ]
    assert ledger.sync(Snapshot.of([sdk_model("a/one", *polled)])) is False
    assert ledger.entries["used-while-away"].last_used == NOW + 40
    assert ledger.infos()["used-while-away"].idle_deadline == NOW + 100  # the tree's countdown
    # Later: any change of the server's last use counts, at the time lmgui saw it, even one
    # a server clock behind this machine's puts before the ledger's.
    now[0] += 5
    polled[1] = sdk("used-later", last_used=NOW - 0.5)
    assert ledger.expired(polled) == []
    assert ledger.entries["used-later"].last_used == NOW + 55
    now[0] += 10  # NOW + 65: 60 s after the load, and nobody used "not-used"
    assert ledger.expired(polled) == ["not-used"]
    # Saved: the countdown survives a restart of lmgui.
    again = InstanceLedger(tmp_path / "l.json", wall=lambda: now[0])
    assert again.entries["used-later"].last_used == NOW + 55
