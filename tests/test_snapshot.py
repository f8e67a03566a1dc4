"""The keyed snapshot diff: applying diff(a, b) to a gives b."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from lmgui.api import Instance, Model
from lmgui.core.snapshot import Snapshot, apply, diff

KEYS = ["a/one", "b/two", "c/three", "d/four", "e/five"]


def model(key: str, *instances: Instance, size: int = 1000, name: str | None = None) -> Model:
    return Model(
        key=key, type="llm", display_name=name or key, size_bytes=size, instances=instances
    )


def inst(key: str, iid: str, ctx: int = 4096) -> Instance:
    return Instance(id=iid, model_key=key, config={"context_length": ctx})


@st.composite
def models(draw: st.DrawFn) -> Model:
    key = draw(st.sampled_from(KEYS))
    suffixes = draw(st.lists(st.sampled_from(["", ":2", ":3", "-custom"]), unique=True, max_size=3))
    ctxs = draw(
        st.lists(
            st.sampled_from([2048, 4096, 8192]), min_size=len(suffixes), max_size=len(suffixes)
        )
    )
    size = draw(st.sampled_from([1000, 2000]))
    name = draw(st.sampled_from([None, "Renamed"]))
    return model(
        key,
        *(inst(key, key + s, c) for s, c in zip(suffixes, ctxs, strict=True)),
        size=size,
        name=name,
    )


snapshots = st.lists(models(), max_size=6).map(Snapshot.of)


def keyed(s: Snapshot) -> dict[str, tuple[Model, dict[str, Instance]]]:
    return {
        m.key: (msgspec.structs.replace(m, instances=()), {i.id: i for i in m.instances})
        for m in s.models
    }


@settings(max_examples=400, deadline=None)
@given(snapshots, snapshots)
def test_applying_the_diff_gives_the_new_snapshot(a: Snapshot, b: Snapshot) -> None:
    assert keyed(apply(a, diff(a, b))) == keyed(b)


@given(snapshots)
def test_nothing_changed_means_an_empty_diff(a: Snapshot) -> None:
    assert diff(a, Snapshot(a.models)).empty


def test_diff_names_fields_and_instances() -> None:
    a = Snapshot.of(
        [model("a/one", inst("a/one", "a/one"), inst("a/one", "a/one:2")), model("b/two")]
    )
    b = Snapshot.of(
        [
            model("a/one", inst("a/one", "a/one", 8192), inst("a/one", "a/one:3"), size=2000),
            model("c/three"),
        ]
    )
    d = diff(a, b)
    assert d.removed == ("b/two",)
    assert [m.key for m in d.added] == ["c/three"]
    [change] = d.changed
    assert change.fields == {"size_bytes"}
    assert [i.id for i in change.instances_added] == ["a/one:3"]
    assert change.instances_removed == ("a/one:2",)
    assert [(i.id, i.context_length) for i in change.instances_changed] == [("a/one", 8192)]
    assert d.instances_removed == ["a/one:2"] and [i.id for i in d.instances_added] == ["a/one:3"]


def test_duplicate_keys_and_instance_ids_are_collapsed() -> None:
    s = Snapshot.of([model("a/one"), model("a/one", inst("a/one", "x"), inst("a/one", "x"))])
    [m] = s.models
    assert [i.id for i in m.instances] == ["x"]
