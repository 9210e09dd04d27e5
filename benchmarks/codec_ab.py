"""The wire codec of this tree against the codec of a git revision, side by side in one process.

    .venv/bin/python benchmarks/codec_ab.py [REV] [--rounds N]     (REV defaults to HEAD~1)

On a shared, loaded machine absolute rates move with the neighbours; two codecs timed in
alternating short rounds inside one process see the same machine, so the median of the per-round
ratios is what to read. REV's `sdlcflow/streams/compiled.py` and `wire.py` are taken from git
(`git show`) and loaded beside the working tree's; everything else (schemas, registry, core
types) is shared. Each event is decoded from, and encoded to, the same bytes by both. Timed in
process CPU time. Writes benchmarks/results/codec_ab.json with the machine description.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec_bench import typical_events

from sdlcflow.bench.machine import describe_machine
from sdlcflow.streams.codec import Codec
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.wire import EventCodec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "codec_ab.json"
ROUND_CALLS = 2_000


def _module_at(rev: str, path: str, name: str, renames: dict[str, str]) -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    for old, new in renames.items():
        source = source.replace(old, new)
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:{path}"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def codec_at(rev: str) -> EventCodec:
    """An EventCodec built from REV's compiled.py and wire.py."""
    _module_at(rev, "sdlcflow/streams/compiled.py", "_rev_compiled", {})
    wire = _module_at(
        rev,
        "sdlcflow/streams/wire.py",
        "_rev_wire",
        {"sdlcflow.streams.compiled": "_rev_compiled"},
    )
    codec: EventCodec = wire.EventCodec(Codec(registry=LocalSchemaRegistry.default()))
    return codec


def paired(before: Callable[[], Any], after: Callable[[], Any], rounds: int) -> dict[str, float]:
    """Median rates of both and the median of per-round speed-ups (after over before)."""
    cpu = time.process_time
    rates_before, rates_after, ratios = [], [], []
    for _ in range(rounds):
        t0 = cpu()
        for _ in range(ROUND_CALLS):
            before()
        t1 = cpu()
        for _ in range(ROUND_CALLS):
            after()
        t2 = cpu()
        rates_before.append(ROUND_CALLS / (t1 - t0))
        rates_after.append(ROUND_CALLS / (t2 - t1))
        ratios.append((t1 - t0) / (t2 - t1))
    return {
        "before_per_s": statistics.median(rates_before),
        "after_per_s": statistics.median(rates_after),
        "speedup": statistics.median(ratios),
    }


def compare(
    before: EventCodec, after: EventCodec, event: Any, frame: bytes, rounds: int
) -> dict[str, dict[str, float]]:
    """Decode and encode of one event, paired."""
    return {
        "decode": paired(lambda: before.decode(frame), lambda: after.decode(frame), rounds),
        "encode": paired(lambda: before.encode(event), lambda: after.encode(event), rounds),
    }


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    rev = args[0] if args else "HEAD~1"
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 25
    before = codec_at(rev)
    after = EventCodec(Codec(registry=LocalSchemaRegistry.default()))
    load_start = describe_machine()["load_average_1m"]
    results: dict[str, dict[str, Any]] = {}
    print(f"{'event':<26} {'op':<6} {rev + ' /s':>14} {'this tree /s':>14} {'speed-up':>9}")
    for name, event in typical_events().items():
        frame = after.encode(event)
        assert before.encode(event) == frame
        assert before.decode(frame) == after.decode(frame) == event
        results[name] = compare(before, after, event, frame, rounds)
        for op, r in results[name].items():
            print(
                f"{name:<26} {op:<6} {r['before_per_s']:>14,.0f} {r['after_per_s']:>14,.0f} "
                f"{r['speedup']:>8.2f}x"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "codec_ab",
        "before": rev,
        "after": "working tree",
        "rounds": rounds,
        "calls_per_round": ROUND_CALLS,
        "load_average_1m_at_start": load_start,
        "machine": describe_machine(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
