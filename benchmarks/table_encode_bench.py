"""CPU per encoding of a repository's table value: every live change encoded again, against the
JSON of the changes a batch left unchanged reused (`storage.ChangeFragments`, by identity).

The states come from `core_bench.py`'s busy repository (10 changes live at once through the
code-change pipeline, with heartbeats, failures, retries, reviews and ticks): the log is
replayed through the core, and after each input whose decisions changed the state, its value
is encoded both ways (alternating which goes first); the bytes must be equal. Reports the CPU
time per encoding of each way (median of the rounds) and their ratio. No broker, no faust.

    .venv/bin/python benchmarks/table_encode_bench.py [--changes 400] [--concurrent 10] [--rounds 5]

Writes benchmarks/results/table_encode.json with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sdlcflow.bench.machine import describe_machine
from sdlcflow.core.decider import handle
from sdlcflow.core.state import RepoState
from sdlcflow.processors.storage import ChangeFragments, StoredRepo, encode_repo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core_bench  # a sibling script: its input log

RESULTS = Path(__file__).resolve().parent / "results" / "table_encode.json"


def written_states(changes: int, concurrent: int) -> list[RepoState]:
    """The state after each input that changed it, in log order (what the shell writes)."""
    inputs, _mix = core_bench.build_log(changes, concurrent)
    state, states = RepoState(), []
    for event in inputs:
        after, _decisions = handle(state, event, core_bench.CONFIG)
        if after is not state:
            states.append(after)
        state = after
    return states


def one_round(states: list[RepoState], reuse_first: bool) -> tuple[float, float]:
    """CPU µs per encoding: (every change encoded, unchanged changes reused)."""
    fragments = ChangeFragments()
    plain = reused = 0.0
    for state in states:
        stored = StoredRepo(state)
        for reuse in (reuse_first, not reuse_first):
            started = time.process_time()
            value = encode_repo(stored, fragments) if reuse else encode_repo(stored)
            took = time.process_time() - started
            if reuse:
                reused, reused_value = reused + took, value
            else:
                plain, plain_value = plain + took, value
        assert reused_value == plain_value, "reused fragments changed the bytes"
    per = 1e6 / len(states)
    return plain * per, reused * per


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=400)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    states = written_states(args.changes, args.concurrent)
    live = statistics.median(len(s.changes) for s in states)
    rounds = [one_round(states, reuse_first=bool(r % 2)) for r in range(args.rounds)]
    plain = statistics.median(r[0] for r in rounds)
    reused = statistics.median(r[1] for r in rounds)
    print(f"{len(states):,} table writes, median {live:g} live changes per repository value")
    print(f"every change encoded: {plain:.1f} µs of CPU per write")
    ratio = plain / reused
    print(f"unchanged changes reused: {reused:.1f} µs of CPU per write ({ratio:.2f}x less)")
    result = {
        "benchmark": "table_encode",
        "machine": describe_machine(),
        "writes": len(states),
        "live_changes_median": live,
        "rounds": [{"every_change_us": p, "reused_us": r} for p, r in rounds],
        "every_change_us": round(plain, 2),
        "reused_us": round(reused, 2),
        "ratio": round(ratio, 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
