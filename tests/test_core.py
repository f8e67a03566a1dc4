"""Qt-free core helpers: the VRAM estimate, the token store, remembered response ids."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest

from lmgui.api import Model, Quantization
from lmgui.cli import main
from lmgui.core.paths import AppPaths
from lmgui.core.responses import LastResponses
from lmgui.core.secrets import TokenStore
from lmgui.core.vram import estimate_instance, kv_bytes_per_token, params_billions
from tests.conftest import SimFactory

GB = 1e9


def model(params: str | None = "8B", size: float = 4.9, bits: float | None = 4) -> Model:
    return Model(
        key="m",
        type="llm",
        display_name="m",
        params_string=params,
        size_bytes=int(size * GB),
        quantization=Quantization("Q4_K_M", bits),
    )


@pytest.mark.parametrize(
    ("params", "size", "bits", "expected"),
    [
        ("8B", 4.9, 4, 8.0),
        ("270M", 0.24, 4, 0.27),
        ("26B-A4B", 18, 4, 26.0),
        ("1.2B", 1.25, 8, 1.2),
        (None, 4.0, 4, 8.0),  # from size and bits per weight
        (None, 4.5, None, 8.0),  # assuming 4.5 bits per weight
        ("unknown", 4.0, 8, 4.0),
    ],
)
def test_parameter_count(
    params: str | None, size: float, bits: float | None, expected: float
) -> None:
    assert params_billions(model(params, size, bits)) == pytest.approx(expected)


def test_kv_cost_matches_the_calibration_points() -> None:
    assert kv_bytes_per_token(model("1B")) == pytest.approx(40_000)
    assert 100_000 < kv_bytes_per_token(model("8B")) < 140_000
    assert 300_000 < kv_bytes_per_token(model("70B")) < 360_000


def test_estimate_full_offload_and_kv_placement() -> None:
    m = model("8B", 4.9)
    full = estimate_instance(m, context_length=8192)
    kv = 8192 * kv_bytes_per_token(m)
    assert full.vram_bytes == pytest.approx(4.9 * GB * 1.05 + kv, rel=1e-6)
    assert full.ram_bytes == 0
    kv_in_ram = estimate_instance(m, context_length=8192, kv_on_gpu=False)
    assert kv_in_ram.vram_bytes == pytest.approx(4.9 * GB * 1.05, rel=1e-6)
    assert kv_in_ram.ram_bytes == pytest.approx(kv, rel=1e-6)
    # More context costs more; half offload moves half the weights to RAM.
    assert estimate_instance(m, context_length=32768).vram_bytes > full.vram_bytes
    half = estimate_instance(m, context_length=8192, gpu_fraction=0.5)
    assert half.weights_ram_bytes == pytest.approx(2.45 * GB, rel=1e-6)
    cpu = estimate_instance(m, context_length=8192, gpu_fraction=0.0)
    assert cpu.vram_bytes == 0 and cpu.ram_bytes == pytest.approx(4.9 * GB + kv, rel=1e-6)


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend in memory: the narrow stand-in for an OS keyring in tests."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_token_store_round_trip(memory_keyring: MemoryKeyring) -> None:
    store = TokenStore()
    assert store.get("http://127.0.0.1:1234") is None
    assert store.set("127.0.0.1:1234/api/v1", "sk-lm-a:b")  # same server, other spelling
    assert store.get("http://127.0.0.1:1234") == "sk-lm-a:b"
    assert memory_keyring.store == {("lmgui", "http://127.0.0.1:1234"): "sk-lm-a:b"}
    store.delete("http://127.0.0.1:1234")
    store.delete("http://127.0.0.1:1234")  # deleting twice is fine
    assert store.get("http://127.0.0.1:1234") is None and store.available


def test_token_store_without_a_keyring_says_so() -> None:
    store = TokenStore()  # the test session's backend is keyring's "fail" backend
    assert store.get("http://x:1") is None
    assert not store.set("http://x:1", "sk-lm-secret:value")
    assert not store.available
    assert store.problem is not None and "session only" in store.problem
    assert "secret" not in store.problem


def test_cli_reads_the_token_from_the_keyring(
    memory_keyring: MemoryKeyring,
    make_sim: SimFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LM_API_TOKEN", raising=False)
    sim = make_sim(token="sk-lm-kr:secret")
    TokenStore().set(sim.url, "sk-lm-kr:secret")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--server", sim.url, "ls"], paths=AppPaths.under(tmp_path), out=out, err=err) == 0
    assert sim.requests[-1].headers["authorization"] == "Bearer sk-lm-kr:secret"


def test_last_responses_per_server_and_model(tmp_path: Path) -> None:
    path = tmp_path / "state" / "last.json"
    memory = LastResponses(path)
    assert memory.get("http://a:1", "m") is None
    memory.set("http://a:1", "m", "resp_1")
    memory.set("a:1", "other", "resp_2")
    memory.set("http://b:1", "m", "resp_3")
    again = LastResponses(path)
    assert again.get("http://a:1/", "m") == "resp_1"
    assert again.get("http://a:1", "other") == "resp_2"
    assert again.get("http://b:1", "m") == "resp_3"
    path.write_text("{broken")
    assert LastResponses(path).get("http://a:1", "m") is None  # a damaged file is not fatal
    assert [p.name for p in path.parent.iterdir()] == ["last.json"]  # no temp files left


def test_paths_default_to_the_platform_folders() -> None:
    paths = AppPaths.default()
    assert all(p.name == "lmgui" or "lmgui" in p.parts for p in vars(paths).values())


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (128000, "128k"),
        (131072, "128k"),
        (32768, "32k"),
        (4096, "4k"),
        (4000, "4k"),
        (40960, "40k"),
        (1500, "1500"),
        (512, "512"),
    ],
)
def test_context_lengths_read_as_model_cards_write_them(n: int | None, text: str) -> None:
    from lmgui.core.format import human_count

    assert human_count(n) == text
