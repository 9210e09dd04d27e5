"""Is the core faster than it was? The working tree against a git revision, side by side.

On a shared machine absolute figures move with the load, so this compares two versions of
`sdlcflow.core` in one run: core_bench's input log (built once, by the working tree) is replayed
through `handle` by child processes that alternate between the two versions (ABBA order), and
each child reports its best CPU time of three passes. The ratio of the medians and the ratio of
each pair are the figures to read. Both versions must make the same decisions: each child also
digests every decision and the final state, and says whether its core ran compiled (a git
export has no extensions, so the base side runs pure; see sdlcflow/compiled_core.py).

The base side runs the pure core unless `--compile-base` compiles it with its own
tools/compile_core.py (the working tree runs whichever core `make install` left it). The base
side can also run under another interpreter (`--base-python`), to compare CPython
builds on the same code: it then runs in a scratch venv of that interpreter holding the two
packages the replay imports (pyyaml, psutil).

    .venv/bin/python benchmarks/core_ab.py --base main~3 [--rounds 6] [--quick] [--compile-base]
    .venv/bin/python benchmarks/core_ab.py --base HEAD --compile-base --instructions
    .venv/bin/python benchmarks/core_ab.py --base HEAD \
        --base-python ~/.pyenv/versions/3.11.7/bin/python3.11 \
        --results benchmarks/results/interpreter_ab.json

`--instructions` counts instead of timing: each side replays the log under valgrind's
cachegrind, once with one pass and once with three, and the difference over two is the
instructions one pass executes (imports, unpickling and the digest pass cancel out). Keep the
working tree still meanwhile: each child loads the core it finds when it starts. The count
does not move with the load (hash seed fixed), so a change of 1-2% that timing on this machine
cannot resolve (pairs range 0.7-1.4x in a noisy hour) shows; it is not time (memory stalls and
branch misses are not counted), so read it beside a timed run. Needs `valgrind` (Debian:
`apt-get install valgrind`); about 4 minutes for the full log.

Writes benchmarks/results/core_ab.json (or --results) with a machine description.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "core_ab.json"
PASSES = 3


def replay_child(log_path: str, passes: int) -> None:
    """In a child whose PYTHONPATH picks the version: best CPU seconds of replaying the log,
    whether its core ran compiled, and a digest of every decision and the final state (an
    untimed pass) so the two sides are shown to decide exactly alike, not just as often."""
    from core_bench import CONFIG

    import sdlcflow.core
    from sdlcflow.core.codec import canonical_json, to_plain
    from sdlcflow.core.decider import handle
    from sdlcflow.core.state import RepoState

    inputs = pickle.loads(Path(log_path).read_bytes())
    best, decisions = float("inf"), 0
    for _ in range(passes):
        state, decisions = RepoState(), 0
        started = time.process_time()
        for event in inputs:
            state, out = handle(state, event, CONFIG)
            decisions += len(out)
        best = min(best, time.process_time() - started)
    digest, state = hashlib.sha256(), RepoState()
    for event in inputs:
        state, out = handle(state, event, CONFIG)
        for decision in out:
            digest.update(canonical_json(to_plain(decision)))
    digest.update(canonical_json(state.to_plain()))
    compiled = getattr(sdlcflow.core, "COMPILED", False)  # revisions before the compiled core
    result = {"cpu_s": best, "decisions": decisions, "digest": digest.hexdigest()}
    print(json.dumps({**result, "compiled": compiled}))


def export_revision(revision: str, into: Path) -> Path:
    """The package (and the schemas its `sdlcflow/schemas` link points at) as it was at
    `revision`, unpacked under `into`."""
    paths = [
        path  # tools/ (the core's build) is younger than some revisions worth comparing with
        for path in ("sdlcflow", "schemas", "tools", "pyproject.toml")
        if subprocess.run(["git", "cat-file", "-e", f"{revision}:{path}"], cwd=ROOT).returncode == 0
    ]
    archive = subprocess.run(
        ["git", "archive", revision, *paths],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def scratch_venv(python: str, into: Path) -> str:
    """A venv of `python` with what the replay child imports besides the package itself."""
    subprocess.run([python, "-m", "venv", str(into)], check=True)
    pip = [str(into / "bin" / "python"), "-m", "pip", "install", "-q", "pyyaml", "psutil"]
    subprocess.run(pip, check=True)
    return str(into / "bin" / "python")


def interpreter(python: str) -> str:
    """What a side's interpreter is: version, path and how it was built."""
    probe = (  # whether the interpreter runs from libpython is read off its own memory map
        "import sys, sysconfig; maps = open('/proc/self/maps').read(); "
        "print(sys.version.split()[0], sys._base_executable, "
        "'libpython shared' if 'libpython' in maps else 'libpython linked in', "
        "sysconfig.get_config_var('CONFIG_ARGS'))"
    )
    return subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_child(
    python: str, tree: Path, log_path: Path, passes: int = PASSES, wrapper: tuple[str, ...] = ()
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}"}
    if wrapper:
        env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts in every counted run
    done = subprocess.run(
        [*wrapper, python, __file__, "--child", str(log_path), "--passes", str(passes)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"replay under {tree} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def instructions_per_pass(
    python: str, tree: Path, log_path: Path
) -> tuple[int, list[dict[str, Any]]]:
    """(instructions one replay pass executes, the children's results) under cachegrind: a
    child replaying PASSES passes less one replaying a single pass, over the passes between."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on PATH (Debian: apt-get install valgrind)")
    counts, results = [], []
    with tempfile.TemporaryDirectory(prefix="core-ab-cachegrind-") as scratch:
        for passes in (1, PASSES):
            out = Path(scratch) / f"cachegrind.{passes}"
            wrapper = (
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                f"--cachegrind-out-file={out}",
            )
            results.append(run_child(python, tree, log_path, passes, wrapper))
            summary = [line for line in out.read_text().splitlines() if line.startswith("summary:")]
            counts.append(int(summary[0].split()[1]))
    return (counts[1] - counts[0]) // (PASSES - 1), results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=6, help="pairs of runs (ABBA order)")
    parser.add_argument("--quick", action="store_true", help="the small log of core_bench")
    parser.add_argument("--base-python", help="run the base side under this interpreter")
    parser.add_argument(
        "--compile-base", action="store_true", help="compile the base's core with mypyc too"
    )
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (valgrind), not time"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=PASSES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        replay_child(args.child, args.passes)
        return 0
    from core_bench import build_log

    from sdlcflow.bench.machine import describe_machine

    changes, concurrency = (60, 10) if args.quick else (400, 25)
    inputs, _mix = build_log(changes, concurrency)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="core-ab-") as scratch:
        log_path = Path(scratch) / "inputs.pickle"
        log_path.write_bytes(pickle.dumps(inputs))
        trees = {"base": export_revision(args.base, Path(scratch) / "base"), "work": ROOT}
        pythons = {"base": sys.executable, "work": sys.executable}
        if args.base_python:
            pythons["base"] = scratch_venv(args.base_python, Path(scratch) / "venv")
        if args.compile_base:  # the base's own build script, as `make install` would run it
            compile_core = [pythons["base"], str(trees["base"] / "tools" / "compile_core.py")]
            subprocess.run(compile_core, cwd=trees["base"], check=True)
        builds = {name: interpreter(python) for name, python in pythons.items()}
        for name, build in builds.items():
            print(f"{name}: {build}")
        measure = _counted if args.instructions else _timed
        results = measure(args, pythons, trees, log_path, len(inputs))
    report = {
        "benchmark": "core_ab",
        "started_at": time.time(),
        "base": args.base,
        "interpreters": builds,
        "machine": {**describe_machine(), "load_average_1m_at_start": load_at_start},
        "workload": {"changes": changes, "concurrency": concurrency, "inputs": len(inputs)},
        "results": results,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.results}")
    return 0 if results["decisions_identical"] else 1


Sides = dict[str, Any]


def _timed(
    args: argparse.Namespace, pythons: Sides, trees: Sides, log_path: Path, inputs: int
) -> dict[str, Any]:
    """Alternating timed children (ABBA), the best of PASSES passes each."""
    cpu: dict[str, list[float]] = {"base": [], "work": []}
    children: dict[str, list[dict[str, Any]]] = {"base": [], "work": []}
    for round_no in range(args.rounds):
        order = ("base", "work") if round_no % 2 == 0 else ("work", "base")
        for name in order:
            result = run_child(pythons[name], trees[name], log_path)
            cpu[name].append(result["cpu_s"])
            children[name].append(result)
        print(
            f"round {round_no + 1}: base {cpu['base'][-1]:.3f} s, work {cpu['work'][-1]:.3f} s CPU"
        )
    pairs = [b / w for b, w in zip(cpu["base"], cpu["work"], strict=True)]
    base_median, work_median = statistics.median(cpu["base"]), statistics.median(cpu["work"])
    speedup = base_median / work_median
    results = _agreement(children, inputs)
    print(
        f"base ({args.base}): {inputs / base_median:,.0f} inputs/s per core of CPU time; "
        f"working tree: {inputs / work_median:,.0f}/s; speed-up {speedup:.2f}x "
        f"(median of {args.rounds}; per pair {min(pairs):.2f}-{max(pairs):.2f}x)"
    )
    return {
        **results,
        "cpu_seconds": cpu,
        "inputs_per_cpu_s_median": {"base": inputs / base_median, "work": inputs / work_median},
        "speedup_of_medians": speedup,
        "speedup_per_pair": pairs,
    }


def _counted(
    args: argparse.Namespace, pythons: Sides, trees: Sides, log_path: Path, inputs: int
) -> dict[str, Any]:
    """Instructions per pass of each side under cachegrind, both sides at once (a count does
    not depend on what else runs)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(instructions_per_pass, pythons[name], trees[name], log_path)
            for name in ("base", "work")
        }
        counted = {name: future.result() for name, future in futures.items()}
    per_pass = {name: count for name, (count, _results) in counted.items()}
    results = _agreement({name: children for name, (_c, children) in counted.items()}, inputs)
    ratio = per_pass["base"] / per_pass["work"]
    print(
        f"instructions per pass: base ({args.base}) {per_pass['base']:,}, working tree "
        f"{per_pass['work']:,} ({per_pass['work'] / inputs:,.0f} per input); "
        f"base/work {ratio:.3f}x"
    )
    return {
        **results,
        "instructions_per_pass": per_pass,
        "instructions_per_input": {name: n / inputs for name, n in per_pass.items()},
        "instructions_base_over_work": ratio,
    }


def _agreement(children: dict[str, list[dict[str, Any]]], inputs: int) -> dict[str, Any]:
    """Whether both sides decided exactly alike, and which core each ran; printed too."""
    digests = {result["digest"] for runs in children.values() for result in runs}
    identical = len(digests) == 1
    decisions = {name: runs[-1]["decisions"] for name, runs in children.items()}
    cores = {
        name: " or ".join(sorted({_core_name(result["compiled"]) for result in runs}))
        for name, runs in children.items()
    }
    print(
        f"input log: {inputs:,} events; decisions base {decisions['base']:,.0f}, "
        f"work {decisions['work']:,.0f}; "
        f"{'identical' if identical else 'DIFFERENT'} decisions and final states"
    )
    print(f"core: base {cores['base']}, working tree {cores['work']}")
    return {"decisions": decisions, "decisions_identical": identical, "core": cores}


def _core_name(compiled: bool) -> str:
    return "compiled" if compiled else "pure"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
