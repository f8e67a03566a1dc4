"""The simulated server's state: catalog, instances, stored responses, downloads.

No HTTP and no event loop here: every method is quick and runs under one lock, so the HTTP layer
(on uvicorn's thread) and tests (on theirs) can both call it. Time comes from an injectable clock,
so TTL expiry and download progress can be driven by a test without waiting.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from lmgui.sim.catalog import GB, REMOTE_CATALOG
from lmgui.sim.textgen import Turn

__all__ = [
    "ManualClock",
    "SimConfig",
    "SimError",
    "SimInstance",
    "SimState",
    "StoredResponse",
    "Work",
]


class ManualClock:
    """A clock a test moves by hand: ``clock.advance(61)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 1234
    token: str | None = None
    vram_gb: float = 24.0
    tokens_per_second: float = 60.0
    """Streaming rate; 0 means as fast as possible."""
    load_seconds_per_gb: float = 0.4
    seed: int = 0
    accept_load_extensions: bool = False
    jit_ttl_seconds: float = 3600.0
    auto_evict: bool = True
    jit: bool = True
    """Just-in-time loading: a request to a model that is not loaded loads it (LM Studio's
    default). Off, such a request is refused, and ``/v1/models`` and ``/api/v0/models`` list
    only loaded models, as the real server does."""
    answer_tokens: int | None = None
    """Fixed answer length in words (benchmarks); None means seeded 24..72."""
    download_bytes_per_second: float = 400e6
    legacy: bool = False
    """Behave like LM Studio before 0.4: no /api/v1, the v0 list at /api/v0/models."""
    models_shape: str = "v1"
    """``v0`` serves the older ``{"object": "list", "data": [...]}`` shape at /api/v1/models."""
    response_ttl_seconds: float | None = None
    # fault injection
    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    # stream faults (``POST /api/v1/chat`` with ``stream: true``); read when a stream starts
    stream_error: Literal["close", "end"] | None = None
    """Make every stream fail after ``stream_error_after`` content deltas with an SSE ``error``
    event: ``"close"`` then closes the stream without ``chat.end``; ``"end"`` still sends a
    ``chat.end`` (with an empty ``output``), as lmstudio-api.md says the real server does."""
    stream_error_after: int = 3
    """Content deltas (reasoning and message) sent before a ``stream_error``; 0 = before any."""
    stream_stall_after: int | None = None
    """Go silent after this many content deltas (0 = before any): no bytes at all until the
    client disconnects or ``stream_fault_seconds`` pass, then close without ``chat.end``."""
    stream_comments_only: bool = False
    """Send nothing but SSE comment lines (``: keep-alive``), no event at all, not even
    ``chat.start``, every ``stream_comment_interval_ms``; close after ``stream_fault_seconds``."""
    stream_comment_interval_ms: float = 1000.0
    stream_fault_seconds: float = 120.0
    """How long a stalled or comments-only stream lasts before the simulator closes it."""
    sdk_api: bool = True
    """Serve the SDK websocket API (``/llm``, ``/system``...) and ``/lmstudio-greeting`` on the
    REST port, as LM Studio does. False behaves like a server (or a proxy in front of it) that
    only speaks plain HTTP: websocket upgrades are refused and the greeting is a 404."""


class SimError(Exception):
    """An HTTP error response the simulator sends, with the real server's body shape."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body

    @classmethod
    def of(
        cls,
        status: int,
        message: str,
        type_: str = "invalid_request",
        code: str | None = None,
        param: str | None = None,
    ) -> SimError:
        err: dict[str, Any] = {"type": type_, "message": message}
        if code:
            err["code"] = code
        if param:
            err["param"] = param
        return cls(status, {"error": err})


@dataclass
class SimInstance:
    id: str
    model_key: str
    config: dict[str, Any]
    vram_bytes: int
    ttl: float | None
    last_used: float
    jit: bool = False
    loading: bool = True
    load_seconds: float = 0.0
    gpu: float | str = "max"
    """The GPU offload as requested: a ratio 0..1, or ``"max"`` / ``"off"`` (the SDK's encoding)."""
    reference: str = ""
    """The SDK's ``instanceReference``: an opaque id that, unlike ``id``, is never reused."""
    prompting: int = 0
    """Requests on this instance that are processing their prompt."""
    generating: int = 0
    """Requests on this instance that are generating tokens."""
    embedding: int = 0
    """Requests on this (embedding model's) instance that are computing embeddings."""

    @property
    def busy(self) -> bool:
        return self.prompting + self.generating + self.embedding > 0


class Work:
    """One request's use of an instance, from prompt processing to its last token.

    The instance counts as busy (its TTL does not run, the SDK reports it processing) until
    ``done()``; ``generating()`` moves it from prompt processing to generation. Both are
    idempotent, so a stream cut off at any point can always call ``done()``.
    """

    def __init__(self, state: SimState, inst: SimInstance) -> None:
        self._state = state
        self._inst = inst
        self._phase: Literal["prompt", "generating", "embedding", "done"] = "prompt"
        inst.prompting += 1

    def generating(self) -> None:
        with self._state.lock:
            if self._phase == "prompt":
                self._inst.prompting -= 1
                self._inst.generating += 1
                self._phase = "generating"

    def embedding(self) -> None:
        """An embedding request: from prompt processing to computing the vectors."""
        with self._state.lock:
            if self._phase == "prompt":
                self._inst.prompting -= 1
                self._inst.embedding += 1
                self._phase = "embedding"

    def done(self) -> None:
        with self._state.lock:
            if self._phase == "prompt":
                self._inst.prompting -= 1
            elif self._phase == "generating":
                self._inst.generating -= 1
            elif self._phase == "embedding":
                self._inst.embedding -= 1
            if self._phase != "done":
                self._phase = "done"
                self._inst.last_used = self._state.clock()


@dataclass
class StoredResponse:
    id: str
    model_key: str
    instance_id: str
    turns: tuple[Turn, ...]
    created: float


@dataclass
class _Download:
    job_id: str
    entry: dict[str, Any]
    started: float
    started_at: str
    total: int
    completed_at: str | None = None


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def kv_bytes_per_token(size_bytes: int) -> float:
    """The simulator's own KV-cache cost: grows with the square root of the model's size."""
    return 50_000 * math.sqrt(max(size_bytes, 1) / GB)


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_sim")}


@dataclass
class SimState:
    catalog: list[dict[str, Any]]
    config: SimConfig = field(default_factory=SimConfig)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._catalog = [copy.deepcopy(e) for e in self.catalog]
        self._index: dict[str, dict[str, Any]] = {}
        """Each entry by its key and its variants: the SDK API looks models up per instance
        per call, and a scan of a 2000-model catalog each time made the simulator the slow end."""
        for e in self._catalog:
            self._add_to_index(e)
        self._remote = [copy.deepcopy(e) for e in REMOTE_CATALOG]
        self.instances: dict[str, SimInstance] = {}
        self.responses: dict[str, StoredResponse] = {}
        self._downloads: dict[str, _Download] = {}
        self._ids = itertools.count(1)
        self._references = itertools.count(1)
        self.events: list[tuple[str, str]] = []
        """(what, instance id) for loads, unloads, expiries and evictions; tests read it."""
        # The SDK reports times as Unix milliseconds; the state's clock may be a ManualClock, so
        # wall time is derived from one anchor: advancing the clock moves the reported times.
        self._wall_anchor = time.time() - self.clock()

    # ------------------------------------------------------------------ catalog

    def _add_to_index(self, e: dict[str, Any]) -> None:
        for name in (e["key"], *e.get("variants", ())):
            self._index.setdefault(name, e)

    def entry(self, key: str) -> dict[str, Any] | None:
        return self._index.get(key) or self._index.get(key.split("@", 1)[0])

    def list_models(self) -> list[dict[str, Any]]:
        with self.lock:
            self._expire()
            out = []
            for e in self._catalog:
                item = _public(e)
                item["loaded_instances"] = [
                    {"id": i.id, "config": dict(i.config)}
                    for i in self.instances.values()
                    if i.model_key == e["key"]
                ]
                out.append(item)
            return out

    def list_models_v0(self, *, detail: bool = False) -> list[dict[str, Any]]:
        """The v0 rows: one per model, ``state`` ``loaded`` once one of its instances finished
        loading, ``loading`` while its only instances are still loading.

        ``detail``: the rows ``/api/v0/models`` serves, with the ``capabilities`` array (only
        ``tool_use`` is known) and, while JIT loading is off, only models that are loaded.
        """
        with self.lock:
            self._expire()
            states: dict[str, list[SimInstance]] = {}
            for inst in self.instances.values():
                states.setdefault(inst.model_key, []).append(inst)
            out = []
            for e in self._catalog:
                insts = states.get(e["key"], [])
                done = [i for i in insts if not i.loading]
                if detail and not self.config.jit and not done:
                    continue
                out.append(self._v0_row(e, insts, done, detail))
            return out

    def model_v0(self, model: str) -> dict[str, Any] | None:
        """One ``/api/v0/models/{id}`` row by key, variant or instance id; None if unknown (or
        not loaded while JIT loading is off)."""
        with self.lock:
            self._expire()
            inst = self.instances.get(model)
            entry = self.entry(inst.model_key if inst else model)
            if entry is None:
                return None
            insts = [i for i in self.instances.values() if i.model_key == entry["key"]]
            done = [i for i in insts if not i.loading]
            if not self.config.jit and not done:
                return None
            return self._v0_row(entry, insts, done, True)

    @staticmethod
    def _v0_row(
        e: dict[str, Any], insts: list[SimInstance], done: list[SimInstance], detail: bool
    ) -> dict[str, Any]:
        caps = e.get("capabilities") or {}
        vision = bool(caps.get("vision"))
        item: dict[str, Any] = {
            "id": e["key"],
            "object": "model",
            "type": "embeddings" if e["type"] == "embedding" else ("vlm" if vision else "llm"),
            "publisher": e.get("publisher"),
            "arch": e.get("architecture"),
            "compatibility_type": e.get("format"),
            "quantization": (e.get("quantization") or {}).get("name"),
            "state": "loaded" if done else ("loading" if insts else "not-loaded"),
            "max_context_length": e.get("max_context_length"),
        }
        if done:
            item["loaded_context_length"] = done[0].config.get("context_length")
        if detail:
            item["capabilities"] = ["tool_use"] if caps.get("trained_for_tool_use") else []
        return item

    # ------------------------------------------------------------------ memory

    def vram_used(self) -> int:
        return sum(i.vram_bytes for i in self.instances.values())

    def estimate(self, entry: dict[str, Any], config: dict[str, Any], gpu: float) -> int:
        """VRAM a load would take: weights times the offload, plus the KV cache if on GPU."""
        size = int(entry.get("size_bytes") or 0)
        kv = config.get("context_length", 4096) * kv_bytes_per_token(size)
        kv_on_gpu = config.get("offload_kv_cache_to_gpu", True)
        return int(size * gpu + (kv if kv_on_gpu and gpu > 0 else 0))

    # ------------------------------------------------------------------ loading

    def _new_id(self, key: str) -> str:
        if key not in self.instances:
            return key
        n = 2
        while f"{key}:{n}" in self.instances:
            n += 1
        return f"{key}:{n}"

    def begin_load(self, key: str, options: dict[str, Any], *, jit: bool = False) -> SimInstance:
        """Register a loading instance (visible at once, like the real server) or raise."""
        with self.lock:
            self._expire()
            entry = self.entry(key)
            if entry is None:
                raise SimError.of(
                    404, f"Model '{key}' not found.", "model_not_found", "model_not_found"
                )
            max_ctx = int(entry.get("max_context_length") or 4096)
            ctx = int(options.get("context_length") or min(4096, max_ctx))
            if ctx > max_ctx:
                raise SimError.of(
                    400,
                    f"context_length {ctx} exceeds the model's maximum of {max_ctx}.",
                    code="invalid_value",
                    param="context_length",
                )
            config: dict[str, Any] = {"context_length": ctx}
            if entry["type"] == "llm":
                config["eval_batch_size"] = int(options.get("eval_batch_size") or 512)
                config["parallel"] = int(options.get("parallel") or 4)
                config["flash_attention"] = bool(options.get("flash_attention", True))
                config["offload_kv_cache_to_gpu"] = bool(
                    options.get("offload_kv_cache_to_gpu", True)
                )
                if entry.get("_sim_experts"):
                    config["num_experts"] = int(options.get("num_experts") or entry["_sim_experts"])
            gpu_opt = options.get("gpu")
            if gpu_opt is None:
                gpu_opt = "max"
            gpu = {"max": 1.0, "off": 0.0}.get(gpu_opt) if isinstance(gpu_opt, str) else gpu_opt
            gpu = float(gpu if gpu is not None else 1.0)
            need = self.estimate(entry, config, gpu)
            budget = int(self.config.vram_gb * GB)
            used = self.vram_used()
            if used + need > budget:
                raise SimError.of(
                    500,
                    f'Failed to load model "{entry["key"]}": it needs about {need / GB:.1f} GB '
                    f"of VRAM but only {(budget - used) / GB:.1f} GB of {budget / GB:.0f} GB is "
                    "free. Model loading aborted due to insufficient system resources.",
                    "internal_error",
                )
            identifier = options.get("identifier")
            if identifier is not None and identifier in self.instances:
                raise SimError.of(
                    400, f"An instance with identifier '{identifier}' is already loaded."
                )
            iid = identifier or self._new_id(entry["key"])
            ttl = options.get("ttl")
            inst = SimInstance(
                id=iid,
                model_key=entry["key"],
                config=config,
                vram_bytes=need,
                ttl=float(ttl)
                if ttl is not None
                else (self.config.jit_ttl_seconds if jit else None),
                last_used=self.clock(),
                jit=jit,
                load_seconds=round(
                    self.config.load_seconds_per_gb * int(entry.get("size_bytes") or 0) / GB, 3
                ),
                gpu=gpu_opt,
                reference=self._new_reference(iid),
            )
            if jit and self.config.auto_evict:
                for other in [i for i in self.instances.values() if i.jit]:
                    del self.instances[other.id]
                    self.events.append(("evicted", other.id))
            self.instances[iid] = inst
            self.events.append(("load_started", iid))
            return inst

    def finish_load(self, instance_id: str) -> SimInstance | None:
        """Mark loaded; None when the instance was unloaded (or forgotten) while loading."""
        with self.lock:
            inst = self.instances.get(instance_id)
            if inst is None:
                return None
            inst.loading = False
            inst.last_used = self.clock()
            self.events.append(("loaded", instance_id))
            return inst

    def unload(self, instance_id: str) -> None:
        with self.lock:
            self._expire()
            if self.instances.pop(instance_id, None) is None:
                raise SimError.of(
                    404,
                    f"No model instance with id '{instance_id}' is loaded.",
                    "model_not_found",
                    "model_not_found",
                )
            self.events.append(("unloaded", instance_id))

    def _new_reference(self, iid: str) -> str:
        n = next(self._references)
        return hashlib.sha256(f"{self.config.seed}:{iid}:{n}".encode()).hexdigest()[:24]

    def _expire(self) -> None:
        now = self.clock()
        for inst in list(self.instances.values()):
            if inst.loading or inst.busy or inst.ttl is None:
                continue  # only an idle instance's timer runs out
            if now - inst.last_used >= inst.ttl:
                del self.instances[inst.id]
                self.events.append(("expired", inst.id))
        if self.config.response_ttl_seconds is not None:
            limit = self.config.response_ttl_seconds
            for rid in [r.id for r in self.responses.values() if now - r.created >= limit]:
                del self.responses[rid]

    def restart(self) -> None:
        """Forget every instance and stored response, as a server restart does."""
        with self.lock:
            self.instances.clear()
            self.responses.clear()
            self.events.append(("restarted", ""))

    # ------------------------------------------------------------------ chat

    def find_target(self, model: str) -> tuple[dict[str, Any] | None, SimInstance | None]:
        """(catalog entry, instance to use) for a request's ``model``: an instance id, a key or
        a variant. The instance is a live one (not a copy), one that finished loading when
        there is one; None when the model has no instance. The entry is None for an unknown
        model. Any type of model: each surface says what it accepts."""
        with self.lock:
            self._expire()
            inst = self.instances.get(model)
            if inst is not None:
                return self.entry(inst.model_key), inst
            entry = self.entry(model)
            if entry is None:
                return None, None
            insts = [i for i in self.instances.values() if i.model_key == entry["key"]]
            ready = [i for i in insts if not i.loading] or insts
            return entry, ready[0] if ready else None

    def resolve_chat_target(self, model: str) -> tuple[dict[str, Any], SimInstance | None]:
        """(catalog entry, instance to use); instance None means a JIT load is needed."""
        with self.lock:
            entry, inst = self.find_target(model)
            if entry is None:
                raise SimError.of(
                    404, f"Model '{model}' not found.", "model_not_found", "model_not_found"
                )
            if entry["type"] != "llm":
                raise SimError.of(
                    404,
                    f"Model '{model}' is not an LLM and cannot be used for chat.",
                    "model_not_found",
                    "model_not_found",
                )
            return entry, inst

    def touch(self, instance_id: str) -> None:
        with self.lock:
            inst = self.instances.get(instance_id)
            if inst is not None:
                inst.last_used = self.clock()

    @contextmanager
    def work(self, instance_id: str) -> Iterator[Work | None]:
        """Count a request as running on an instance for the duration of the block.

        Yields None when the instance is gone (unloaded or expired meanwhile). Ending the block
        ends the work and resets the idle timer, however the block ends.
        """
        with self.lock:
            inst = self.instances.get(instance_id)
            item = Work(self, inst) if inst is not None else None
            if inst is not None:
                inst.last_used = self.clock()
        try:
            yield item
        finally:
            if item is not None:
                item.done()

    # ------------------------------------------------------------------ SDK views

    def wall_ms(self, t: float) -> int:
        """A clock reading as Unix time in milliseconds (the SDK's ``lastUsedTime``)."""
        return int((self._wall_anchor + t) * 1000)

    def loaded(self) -> list[SimInstance]:
        """Instances that finished loading, after expiring idle ones (a snapshot)."""
        with self.lock:
            self._expire()
            return [copy.copy(i) for i in self.instances.values() if not i.loading]

    def instance(self, instance_id: str) -> SimInstance | None:
        """A snapshot of one instance by id, after expiring idle ones; loading ones too."""
        with self.lock:
            self._expire()
            inst = self.instances.get(instance_id)
            return copy.copy(inst) if inst is not None else None

    def history(self, previous_response_id: str | None) -> tuple[Turn, ...] | None:
        """The thread behind a response id; None when the server does not know the id."""
        if previous_response_id is None:
            return ()
        with self.lock:
            self._expire()
            stored = self.responses.get(previous_response_id)
            return stored.turns if stored else None

    def response_id(self) -> str:
        """A new stored-response id, ``resp_`` and 48 hex digits (what LM Studio makes)."""
        with self.lock:
            n = next(self._ids)
            return "resp_" + hashlib.sha256(f"{self.config.seed}:{n}".encode()).hexdigest()[:48]

    def store(
        self, model_key: str, instance_id: str, turns: tuple[Turn, ...], rid: str | None = None
    ) -> str:
        """Keep a thread under a response id (a new one unless ``rid`` is given)."""
        with self.lock:
            rid = rid or self.response_id()
            self.responses[rid] = StoredResponse(rid, model_key, instance_id, turns, self.clock())
            return rid

    # ------------------------------------------------------------------ downloads

    def start_download(self, model: str, quantization: str | None) -> dict[str, Any]:
        with self.lock:
            key = model
            if model.startswith("https://huggingface.co/"):
                repo = model.removeprefix("https://huggingface.co/").strip("/")
                key = repo.lower()
            if self.entry(key) is not None:
                return {"status": "already_downloaded"}
            entry = next((e for e in self._remote if e["key"] == key), None)
            if entry is None and model.startswith("https://huggingface.co/") and "/" in key:
                entry = {
                    "type": "llm",
                    "publisher": key.split("/")[0],
                    "key": key,
                    "display_name": key.split("/")[-1],
                    "architecture": None,
                    "quantization": {"name": quantization or "Q4_K_M", "bits_per_weight": 4},
                    "size_bytes": 2 * GB,
                    "params_string": None,
                    "max_context_length": 32768,
                    "format": "gguf",
                }
            if entry is None:
                raise SimError.of(
                    404,
                    f"Model '{model}' was not found in the catalog.",
                    "model_not_found",
                    "model_not_found",
                )
            if quantization:
                entry = {
                    **entry,
                    "quantization": {"name": quantization.upper(), "bits_per_weight": None},
                }
            job_id = "job_" + hashlib.sha256(f"{key}:{next(self._ids)}".encode()).hexdigest()[:10]
            job = _Download(job_id, entry, self.clock(), _iso_now(), int(entry["size_bytes"]))
            self._downloads[job_id] = job
            return self._download_view(job)

    def download_status(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self._downloads.get(job_id)
            if job is None:
                raise SimError.of(404, f"Download job '{job_id}' not found.", "job_not_found")
            return self._download_view(job)

    def _download_view(self, job: _Download) -> dict[str, Any]:
        rate = self.config.download_bytes_per_second
        done = min(job.total, int((self.clock() - job.started) * rate))
        view: dict[str, Any] = {
            "job_id": job.job_id,
            "status": "downloading",
            "total_size_bytes": job.total,
            "started_at": job.started_at,
        }
        if done >= job.total:
            if job.completed_at is None:
                job.completed_at = _iso_now()
                if self.entry(job.entry["key"]) is None:
                    added = copy.deepcopy(job.entry)
                    self._catalog.append(added)
                    self._add_to_index(added)
            view.update(
                status="completed", downloaded_bytes=job.total, completed_at=job.completed_at
            )
        else:
            left = (job.total - done) / rate
            view.update(
                downloaded_bytes=done,
                bytes_per_second=rate,
                estimated_completion=datetime.fromtimestamp(time.time() + left, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            )
        return view
