"""Speed figures for lmgui, measured against the simulator (never asserted in the test suite).

    python bench/run.py            # a readable report
    python bench/run.py --json     # the same figures as JSON

Figures:
- poll: ``client.list_models()`` on a 2000-model catalog against a bare ``httpx`` GET of the same
  body plus ``json.loads``, same process, same server (median of N rounds, interleaved).
- stream: the token rate the simulator's SSE stream delivers through ``chat_stream`` at several
  configured rates (issue 4 needs 2000 tok/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import httpx

from lmgui.api import LMStudioClient, MessageDelta
from lmgui.sim import SimConfig, Simulator, synthetic_catalog


async def bench_poll(rounds: int, models: int) -> dict[str, Any]:
    catalog = synthetic_catalog(models, seed=1)
    config = SimConfig(port=0, load_seconds_per_gb=0.0, vram_gb=100_000)
    with Simulator(config, catalog=catalog) as sim:
        async with LMStudioClient(sim.url, lms=None) as client, httpx.AsyncClient() as bare:
            for m in catalog[:20]:  # some loaded instances, as in real use
                await client.load(m["key"])
            url = sim.url + "/api/v1/models"
            ours: list[float] = []
            base: list[float] = []
            for _ in range(rounds):
                t = time.perf_counter()
                r = await bare.get(url)
                json.loads(r.content)
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                await client.list_models()
                ours.append(time.perf_counter() - t)
            body_bytes = len(r.content)
    b, o = statistics.median(base), statistics.median(ours)
    return {
        "models": models,
        "body_bytes": body_bytes,
        "bare_get_json_loads_ms": round(b * 1000, 2),
        "list_models_ms": round(o * 1000, 2),
        "ratio": round(o / b, 3),
    }


async def bench_stream(rate: float, tokens: int) -> dict[str, Any]:
    config = SimConfig(port=0, tokens_per_second=rate, answer_tokens=tokens, load_seconds_per_gb=0)
    with Simulator(config) as sim:
        async with LMStudioClient(sim.url, lms=None) as client:
            await client.load("google/gemma-3-270m")
            first: float | None = None
            count = 0
            async with client.chat_stream("google/gemma-3-270m", "go", store=False) as stream:
                async for ev in stream:
                    if isinstance(ev, MessageDelta):
                        count += 1
                        now = time.perf_counter()
                        first = first or now
                        last = now
    achieved = (count - 1) / (last - first) if first and count > 1 else 0.0
    return {"configured_tps": rate, "deltas": count, "achieved_tps": round(achieved, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "poll": await bench_poll(args.rounds, args.models),
        "stream": [
            await bench_stream(rate, n) for rate, n in ((60, 120), (500, 1000), (2000, 4000))
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", action="store_true")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--models", type=int, default=2000)
    args = p.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    poll = result["poll"]
    print(
        f"poll, {poll['models']} models ({poll['body_bytes'] / 1e6:.2f} MB): list_models "
        f"{poll['list_models_ms']} ms vs bare GET + json.loads {poll['bare_get_json_loads_ms']} ms "
        f"= {poll['ratio']}x"
    )
    for s in result["stream"]:
        print(f"stream at {s['configured_tps']:g} tok/s: {s['achieved_tps']} tok/s achieved")


if __name__ == "__main__":
    main()
