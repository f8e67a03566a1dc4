"""``lmgui-sim``: run the LM Studio simulator on this machine."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import sys
from collections.abc import Sequence

from lmgui.sim.catalog import DEMO_CATALOG, load_catalog, synthetic_catalog
from lmgui.sim.server import Simulator
from lmgui.sim.state import SimConfig
from lmgui.sim.tokens import token_problem
from lmgui.sim.traffic import TrafficRequest, fitting_llms


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction from 0 to 1")
    return value


def _per_minute(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 6000.0:
        raise argparse.ArgumentTypeError("must be above 0 and at most 6000 requests per minute")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (also written ``[::1]`` or ::ffff:127.x)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False  # another host name: it may resolve to any interface
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def exposure_warning(host: str, token: str | None) -> str | None:
    """The one-line warning for a server others can reach and use without a token, else None."""
    if token or is_loopback(host):  # an empty --token "" lets every request in
        return None
    return (
        f"lmgui-sim: listening on {host or 'every address'} without --token: anyone who can "
        "reach this port can load, unload and chat."
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmgui-sim",
        description="An LM Studio 0.4 simulator: the native REST API, v0, the OpenAI- and "
        "Anthropic-compatible endpoints and the SDK websocket API on one port (for lmgui's demo "
        "mode and tests).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1234, help="port, 0 for any free one (default 1234)")
    p.add_argument(
        "--token",
        help="require this API token (Authorization: Bearer), shaped as LM Studio makes them: "
        "sk-lm-<8 letters or digits>:<20 letters or digits>",
    )
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
    p.add_argument(
        "--no-jit",
        action="store_true",
        help="no just-in-time loading: requests for unloaded models fail, and /v1/models and "
        "/api/v0/models list only loaded ones",
    )
    p.add_argument(
        "--traffic",
        type=_per_minute,
        metavar="RATE",
        help="simulate another app chatting through /v1/chat/completions with random LLMs, "
        "RATE requests per minute on average (JIT loads, busy instances, TTL resets)",
    )
    p.add_argument("--answer-tokens", type=int, help="fixed answer length in words")
    p.add_argument("--legacy", action="store_true", help="behave like LM Studio before 0.4")
    p.add_argument("--models-shape", choices=["v1", "v0"], default="v1", help="model list shape")
    p.add_argument(
        "--no-sdk-api",
        action="store_true",
        help="do not serve the SDK websocket API or /lmstudio-greeting (a plain-HTTP server)",
    )
    faults = p.add_argument_group("fault injection")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="delay every request")
    faults.add_argument("--error-rate", type=_rate, default=0.0, help="share of HTML 500s")
    faults.add_argument("--drop-rate", type=_rate, default=0.0, help="share of dropped responses")
    faults.add_argument("--truncate-rate", type=_rate, default=0.0, help="share cut short")
    faults.add_argument(
        "--stream-error",
        choices=["close", "end"],
        help="streams send an SSE error event, then close (no chat.end) or end with chat.end",
    )
    faults.add_argument(
        "--stream-error-after",
        type=_count,
        default=3,
        metavar="N",
        help="content deltas sent before --stream-error (default 3)",
    )
    faults.add_argument(
        "--stream-stall-after",
        type=_count,
        metavar="N",
        help="streams go silent after N content deltas, then close",
    )
    faults.add_argument(
        "--stream-comments-only",
        action="store_true",
        help="streams send only ': keep-alive' comment lines, no events, then close",
    )
    faults.add_argument(
        "--stream-comment-interval-ms",
        type=float,
        default=1000.0,
        metavar="MS",
        help="interval of those comment lines (default 1000)",
    )
    faults.add_argument(
        "--stream-fault-seconds",
        type=float,
        default=120.0,
        metavar="S",
        help="how long a stalled or comments-only stream lasts (default 120)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.token is not None and (problem := token_problem(args.token)):
        print(f"lmgui-sim: {problem}", file=sys.stderr)
        return 2
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
        jit=not args.no_jit,
        answer_tokens=args.answer_tokens,
        legacy=args.legacy,
        models_shape=args.models_shape,
        sdk_api=not args.no_sdk_api,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        truncate_rate=args.truncate_rate,
        stream_error=args.stream_error,
        stream_error_after=args.stream_error_after,
        stream_stall_after=args.stream_stall_after,
        stream_comments_only=args.stream_comments_only,
        stream_comment_interval_ms=args.stream_comment_interval_ms,
        stream_fault_seconds=args.stream_fault_seconds,
    )
    sim = Simulator(config, catalog=catalog)
    try:
        sim.bind()
    except OSError as exc:
        print(
            f"lmgui-sim: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    warning = exposure_warning(args.host, args.token)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 PID` simulates a server restart: every instance and stored response is gone.
        signal.signal(signal.SIGUSR1, lambda *_: sim.state.restart())
    print(f"LM Studio simulator listening on {sim.url}", flush=True)
    print(f"  {len(catalog)} models, {config.vram_gb:g} GB VRAM budget; Ctrl+C to stop", flush=True)
    if args.traffic:
        models = fitting_llms(catalog, config.vram_gb)
        print(
            f"  another app chats with {len(models)} LLMs, {args.traffic:g} requests a minute",
            flush=True,
        )

        def report(request: TrafficRequest) -> None:
            if not sim.exiting:  # a request cut off by Ctrl+C is no news
                print(f"  traffic: {request.describe()}", flush=True)

        sim.start_traffic(args.traffic, models=models, on_request=report)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            sim.serve_forever()
    finally:
        sim.stop_traffic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
