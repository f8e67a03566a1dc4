"""Frozen snapshots of a server's model list, and the keyed diff between two of them.

A poll gives a ``Snapshot``; ``diff(old, new)`` says which models (by key) and which instances
(by id) were added, removed or changed, and which fields of a model changed, so the item model
can emit row inserts, removes and ``dataChanged`` for just those cells, never a reset.
``apply(old, diff(old, new))`` equals ``new`` keyed by model key and instance id (tested).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from lmgui.api.records import Instance, Model

__all__ = ["ModelChange", "Snapshot", "SnapshotDiff", "apply", "diff"]

MODEL_FIELDS: tuple[str, ...] = tuple(
    f.name for f in msgspec.structs.fields(Model) if f.name != "instances"
)


@dataclass(frozen=True)
class Snapshot:
    """One poll's models, in the server's order, each key once (the last one wins)."""

    models: tuple[Model, ...] = ()
    by_key: dict[str, Model] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key = {m.key: _dedupe_instances(m) for m in self.models}
        object.__setattr__(self, "by_key", by_key)
        object.__setattr__(self, "models", tuple(by_key.values()))

    @classmethod
    def of(cls, models: Iterable[Model]) -> Snapshot:
        return cls(tuple(models))

    @functools.cached_property
    def instances(self) -> list[tuple[Model, Instance]]:
        """Every (model, instance), once per snapshot: the tray, the timeline and the TTL
        check each ask after every poll of every server."""
        return [(m, i) for m in self.models if m.instances for i in m.instances]


def _dedupe_instances(model: Model) -> Model:
    ids = {i.id for i in model.instances}
    if len(ids) == len(model.instances):
        return model
    unique = {i.id: i for i in model.instances}
    return msgspec.structs.replace(model, instances=tuple(unique.values()))


@dataclass(frozen=True)
class ModelChange:
    """What changed in one model present in both snapshots."""

    model: Model
    fields: frozenset[str] = frozenset()
    instances_added: tuple[Instance, ...] = ()
    instances_removed: tuple[str, ...] = ()
    instances_changed: tuple[Instance, ...] = ()


@dataclass(frozen=True)
class SnapshotDiff:
    removed: tuple[str, ...] = ()
    added: tuple[Model, ...] = ()
    changed: tuple[ModelChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.changed)

    @property
    def instances_added(self) -> list[Instance]:
        out = [i for m in self.added for i in m.instances]
        return out + [i for c in self.changed for i in c.instances_added]

    @property
    def instances_removed(self) -> list[str]:
        return [i for c in self.changed for i in c.instances_removed]


def diff(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    removed = tuple(k for k in old.by_key if k not in new.by_key)
    added: list[Model] = []
    changed: list[ModelChange] = []
    for key, model in new.by_key.items():
        before = old.by_key.get(key)
        if before is None:
            added.append(model)
        elif before is not model and before != model:  # kept records are the same object
            changed.append(_model_change(before, model))
    return SnapshotDiff(removed, tuple(added), tuple(changed))


def _model_change(before: Model, after: Model) -> ModelChange:
    fields = frozenset(f for f in MODEL_FIELDS if getattr(before, f) != getattr(after, f))
    old_inst = {i.id: i for i in before.instances}
    new_inst = {i.id: i for i in after.instances}
    return ModelChange(
        model=after,
        fields=fields,
        instances_added=tuple(i for iid, i in new_inst.items() if iid not in old_inst),
        instances_removed=tuple(iid for iid in old_inst if iid not in new_inst),
        instances_changed=tuple(
            i for iid, i in new_inst.items() if iid in old_inst and old_inst[iid] != i
        ),
    )


def apply(old: Snapshot, d: SnapshotDiff) -> Snapshot:
    """``old`` with ``d`` applied: what a consumer of the diff holds afterwards."""
    models = {k: m for k, m in old.by_key.items() if k not in set(d.removed)}
    for change in d.changed:
        kept = [
            i for i in models[change.model.key].instances if i.id not in change.instances_removed
        ]
        updated = {i.id: i for i in change.instances_changed}
        instances = [updated.get(i.id, i) for i in kept] + list(change.instances_added)
        models[change.model.key] = msgspec.structs.replace(change.model, instances=tuple(instances))
    for m in d.added:
        models[m.key] = m
    return Snapshot(tuple(models.values()))
