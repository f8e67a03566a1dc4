"""``lmgui-sim``: run the LM Studio simulator on this machine."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence

from lmgui.sim.catalog import DEMO_CATALOG, load_catalog, synthetic_catalog
from lmgui.sim.server import Simulator
from lmgui.sim.state import SimConfig


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction from 0 to 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmgui-sim",
        description="An LM Studio 0.4 REST API simulator (for lmgui's demo mode and tests).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1234, help="port, 0 for any free one (default 1234)")
    p.add_argument("--token", help="require this API token (Authorization: Bearer)")
    p.add_argument("--catalog", metavar="FILE.json", help="models to serve instead of the demo set")
    p.add_argument("--synthetic-models", type=int, metavar="N", help="serve N generated models")
    p.add_argument("--vram-gb", type=float, default=24.0, help="VRAM budget in GB (default 24)")
    p.add_argument("--tokens-per-second", type=float, default=60.0, help="stream rate, 0 = max")
    p.add_argument("--load-seconds-per-gb", type=float, default=0.4, help="load time per GB")
    p.add_argument("--seed", type=int, default=0, help="seed for answers, ids and faults")
    p.add_argument(
        "--accept-load-extensions",
        action="store_true",
        help="accept gpu, ttl, identifier and parallel in load requests (the real server does not)",
    )
    p.add_argument("--jit-ttl", type=float, default=3600.0, help="idle TTL of JIT loads, seconds")
    p.add_argument("--no-auto-evict", action="store_true", help="keep earlier JIT loads loaded")
    p.add_argument("--answer-tokens", type=int, help="fixed answer length in words")
    p.add_argument("--legacy", action="store_true", help="behave like LM Studio before 0.4")
    p.add_argument("--models-shape", choices=["v1", "v0"], default="v1", help="model list shape")
    faults = p.add_argument_group("fault injection")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="delay every request")
    faults.add_argument("--error-rate", type=_rate, default=0.0, help="share of HTML 500s")
    faults.add_argument("--drop-rate", type=_rate, default=0.0, help="share of dropped responses")
    faults.add_argument("--truncate-rate", type=_rate, default=0.0, help="share cut short")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.catalog:
            catalog = load_catalog(args.catalog)
        elif args.synthetic_models:
            catalog = synthetic_catalog(args.synthetic_models, args.seed)
        else:
            catalog = DEMO_CATALOG
    except (OSError, ValueError) as exc:
        print(f"lmgui-sim: cannot read the catalog: {exc}", file=sys.stderr)
        return 2
    config = SimConfig(
        host=args.host,
        port=args.port,
        token=args.token,
        vram_gb=args.vram_gb,
        tokens_per_second=args.tokens_per_second,
        load_seconds_per_gb=args.load_seconds_per_gb,
        seed=args.seed,
        accept_load_extensions=args.accept_load_extensions,
        jit_ttl_seconds=args.jit_ttl,
        auto_evict=not args.no_auto_evict,
        answer_tokens=args.answer_tokens,
        legacy=args.legacy,
        models_shape=args.models_shape,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        truncate_rate=args.truncate_rate,
    )
    sim = Simulator(config, catalog=catalog)
    try:
        sim.bind()
    except OSError as exc:
        print(
            f"lmgui-sim: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 PID` simulates a server restart: every instance and stored response is gone.
        signal.signal(signal.SIGUSR1, lambda *_: sim.state.restart())
    print(f"LM Studio simulator listening on {sim.url}", flush=True)
    print(f"  {len(catalog)} models, {config.vram_gb:g} GB VRAM budget; Ctrl+C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
