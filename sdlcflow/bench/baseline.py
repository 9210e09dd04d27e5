"""The reference architecture the design brief compares sdlcflow with: an HTTP coordinator over a
PostgreSQL lease table (SELECT ... FOR UPDATE SKIP LOCKED, TTL expiry, fencing epochs).

- `PgCluster` runs Debian's PostgreSQL as a private cluster in a temp dir on its own port
  (as the `postgres` user when we are root: PostgreSQL refuses to run as root).
- `LeaseStore` is the whole coordinator logic in SQL: plan a change from the same bench
  templates, lease ready or expired tasks, complete with the epoch, retry with backoff,
  dead-letter after max attempts, skip the approval unless the policy said REVIEW.
- `serve` is the HTTP coordinator (FastAPI + uvicorn); `agents` are HTTP pollers that take
  tasks in batches and behave as the mix says (the same draws as sdlcflow's agents).

    python -m sdlcflow.bench.baseline serve --dsn DSN --port 8701
    python -m sdlcflow.bench.baseline agents --url http://127.0.0.1:8701 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from sdlcflow.bench.mix import (
    CHECK_CAPABILITIES,
    MixSpec,
    says_review,
    should_fail,
    template_for,
)
from sdlcflow.bench.record import RunRecord
from sdlcflow.core.events import REVIEW_CAPABILITY
from sdlcflow.core.planner import Template, load_templates, packaged_template_texts
from sdlcflow.errors import SdlcflowError

LEASE_TTL_MS = 30_000
POLL_IDLE_S = 0.01
BASELINE_CAPABILITIES = (*CHECK_CAPABILITIES, REVIEW_CAPABILITY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_changes (
    change_id    text PRIMARY KEY,
    repo         text NOT NULL,
    template     text NOT NULL,
    review       boolean,
    outcome      text,
    finished_at  bigint
);
CREATE TABLE IF NOT EXISTS bench_tasks (
    change_id        text NOT NULL REFERENCES bench_changes,
    step             text NOT NULL,
    capability       text NOT NULL,
    needs            text[] NOT NULL,
    conditional      boolean NOT NULL,
    status           text NOT NULL,   -- waiting, ready, leased, done, skipped, dead
    attempts         int NOT NULL DEFAULT 0,
    max_attempts     int NOT NULL,
    backoff_ms       int NOT NULL,
    epoch            int NOT NULL DEFAULT 0,
    ready_at         bigint,          -- when it became leasable (or its retry became due)
    lease_owner      text,
    lease_expires_at bigint,
    PRIMARY KEY (change_id, step)
);
CREATE INDEX IF NOT EXISTS bench_tasks_leasable
    ON bench_tasks (capability, ready_at) WHERE status IN ('ready', 'leased');
"""

# Ready tasks whose time has come, or leases past their TTL (expiry re-offers with epoch+1);
# SKIP LOCKED lets concurrent pollers take different rows instead of queueing on one.
LEASE_SQL = """
WITH picked AS (
    SELECT change_id, step FROM bench_tasks
    WHERE capability = ANY(%(capabilities)s)
      AND ((status = 'ready' AND ready_at <= %(now)s)
           OR (status = 'leased' AND lease_expires_at < %(now)s))
    ORDER BY ready_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE bench_tasks t
SET status = 'leased', lease_owner = %(owner)s, lease_expires_at = %(now)s + %(ttl)s,
    epoch = t.epoch + 1, attempts = t.attempts + 1
FROM picked
WHERE t.change_id = picked.change_id AND t.step = picked.step
RETURNING t.change_id, t.step, t.capability, t.epoch, t.attempts, t.ready_at
"""

# A result counts only from the holder of the current epoch whose lease is still live.
FENCE_SQL = """
UPDATE bench_tasks SET status = %(status)s, lease_owner = NULL
WHERE change_id = %(change_id)s AND step = %(step)s AND status = 'leased'
  AND epoch = %(epoch)s AND lease_expires_at >= %(now)s
RETURNING attempts, max_attempts, backoff_ms
"""


class BaselineError(SdlcflowError):
    """The PostgreSQL baseline could not start or answer."""


@dataclass(frozen=True)
class Lease:
    change_id: str
    step: str
    capability: str
    epoch: int
    attempt: int
    ready_at: int


@dataclass
class Verdict:
    """What a completion did: accepted or not, and what followed from it."""

    accepted: bool
    retried: bool = False
    dead: bool = False
    outcome: str | None = None  # the change's terminal outcome, when this ended it


@dataclass
class LeaseStore:
    """The coordinator's rules as SQL transactions on one connection."""

    conn: psycopg.Connection[Any]
    templates: dict[str, Template] = field(
        default_factory=lambda: load_templates(packaged_template_texts())
    )

    def create_schema(self) -> None:
        with self.conn.transaction():
            self.conn.execute(SCHEMA)

    def plan(self, change_id: str, repo: str, template_name: str, now: int) -> None:
        """Insert the change and its tasks; steps without needs are ready at once."""
        template = self.templates.get(template_name)
        if template is None:
            raise BaselineError(f"no template {template_name!r}; known: {sorted(self.templates)}")
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO bench_changes (change_id, repo, template) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (change_id, repo, template_name),
            )
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bench_tasks (change_id, step, capability, needs, conditional, "
                    "status, max_attempts, backoff_ms, ready_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (
                            change_id, s.id, s.capability, list(s.needs), bool(s.when),
                            "waiting" if s.needs else "ready", s.max_attempts,
                            s.backoff.base_ms, None if s.needs else now,
                        )
                        for s in template.steps
                    ],
                )  # fmt: skip

    def lease(self, owner: str, capabilities: Sequence[str], limit: int, now: int) -> list[Lease]:
        with self.conn.transaction():
            rows = self.conn.execute(
                LEASE_SQL,
                {
                    "capabilities": list(capabilities),
                    "now": now,
                    "limit": limit,
                    "owner": owner,
                    "ttl": LEASE_TTL_MS,
                },
            ).fetchall()
        return [Lease(*row) for row in rows]

    def complete(
        self,
        lease: Lease,
        now: int,
        *,
        ok: bool,
        review: bool | None = None,
    ) -> Verdict:
        """Accept a result of the current epoch; then ready the dependents or retry/dead-letter."""
        with self.conn.transaction():
            self.conn.execute(
                "SELECT 1 FROM bench_changes WHERE change_id = %s FOR UPDATE", (lease.change_id,)
            )  # one change's DAG moves one completion at a time
            fenced = self.conn.execute(
                FENCE_SQL,
                {
                    "status": "done" if ok else "failed",
                    "change_id": lease.change_id,
                    "step": lease.step,
                    "epoch": lease.epoch,
                    "now": now,
                },
            ).fetchone()
            if fenced is None:
                return Verdict(accepted=False)
            if not ok:
                return self._failed(lease, fenced, now)
            if review is not None:
                self.conn.execute(
                    "UPDATE bench_changes SET review = %s WHERE change_id = %s",
                    (review, lease.change_id),
                )
            return Verdict(accepted=True, outcome=self._advance(lease.change_id, now))

    def _failed(self, lease: Lease, fenced: tuple[int, int, int], now: int) -> Verdict:
        attempts, max_attempts, backoff_ms = fenced
        if attempts < max_attempts:
            due = now + backoff_ms * 2 ** (attempts - 1)
            self.conn.execute(
                "UPDATE bench_tasks SET status = 'ready', ready_at = %s "
                "WHERE change_id = %s AND step = %s",
                (due, lease.change_id, lease.step),
            )
            return Verdict(accepted=True, retried=True)
        self.conn.execute(
            "UPDATE bench_tasks SET status = 'dead' WHERE change_id = %s AND step = %s",
            (lease.change_id, lease.step),
        )
        self.conn.execute(
            "UPDATE bench_changes SET outcome = 'ChangeFailed', finished_at = %s "
            "WHERE change_id = %s",
            (now, lease.change_id),
        )
        return Verdict(accepted=True, dead=True, outcome="ChangeFailed")

    def _advance(self, change_id: str, now: int) -> str | None:
        """Ready every waiting task whose needs are met (skipping the approval without a
        REVIEW); promote the change when every task is done or skipped."""
        review = self.conn.execute(
            "SELECT review FROM bench_changes WHERE change_id = %s", (change_id,)
        ).fetchone()
        rows = self.conn.execute(
            "SELECT step, status, needs, conditional FROM bench_tasks WHERE change_id = %s",
            (change_id,),
        ).fetchall()
        status = {step: st for step, st, _, _ in rows}
        moved: dict[str, str] = {}
        progress = True
        while progress:
            progress = False
            for step, _, needs, conditional in rows:
                if status[step] != "waiting" or any(
                    status[n] not in ("done", "skipped") for n in needs
                ):
                    continue
                skip = conditional and not (review and review[0])
                status[step] = moved[step] = "skipped" if skip else "ready"
                progress = True
        for step, new in moved.items():
            self.conn.execute(
                "UPDATE bench_tasks SET status = %s, ready_at = %s "
                "WHERE change_id = %s AND step = %s",
                (new, now, change_id, step),
            )
        if all(st in ("done", "skipped") for st in status.values()):
            self.conn.execute(
                "UPDATE bench_changes SET outcome = 'ChangePromoted', finished_at = %s "
                "WHERE change_id = %s",
                (now, change_id),
            )
            return "ChangePromoted"
        return None


# ------------------------------------------------------------------------------ the cluster


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        raise BaselineError(
            "PostgreSQL is not installed; `apt-get install -y postgresql` (the Makefile's "
            "sysdeps does it)"
        )
    return candidates[-1].parent


class PgCluster:
    """A throwaway PostgreSQL cluster: initdb in a temp dir, its own port, removed at the end.

    The directory is made directly under the temp root (not in the caller's private work dir),
    so the `postgres` user can reach it when we run as root.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sdlcflow-bench-pg-"))
        self.datadir = self.root / "pgdata"
        self.port = _free_port()
        self.bindir = _pg_bindir()
        self.as_postgres = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=bench dbname=postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BaselineError(f"{' '.join(argv[:2])} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        self.datadir.mkdir()
        if self.as_postgres:
            self.root.chmod(0o755)
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir), "-A", "trust", "-U", "bench", "--no-sync")
        # synchronous_commit=off: like the Kafka producers (acks from memory, no fsync per
        # record), so neither side pays a disk flush per message on this shared machine
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
            "-c synchronous_commit=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir / "server.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------ HTTP coordinator


class ConnectionPool:
    """A fixed set of connections handed to request threads one at a time."""

    def __init__(self, dsn: str, size: int) -> None:
        self._free: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
        for _ in range(size):
            self._free.put(psycopg.connect(dsn, autocommit=True))

    @contextlib.contextmanager
    def store(self) -> Iterator[LeaseStore]:
        conn = self._free.get()
        try:
            yield LeaseStore(conn, TEMPLATES)
        finally:
            self._free.put(conn)


TEMPLATES: dict[str, Template] = {}


def _now_ms() -> int:
    return int(time.time() * 1000)


class BaselineRecorder:
    """What the HTTP coordinator did, in the RunRecord shape the figures are computed from."""

    def __init__(self) -> None:
        self.record = RunRecord()
        self.lock = threading.Lock()

    def granted(self, leases: list[Lease], now: int) -> None:
        with self.lock:
            for lease in leases:
                self.record.grants.append((lease.change_id, now))
                if lease.attempt == 1:  # as on sdlcflow: ready -> first grant
                    self.record.lease_waits.append((lease.change_id, now - lease.ready_at))

    def completed(self, lease: Lease, verdict: Verdict, now: int) -> None:
        with self.lock:
            change = lease.change_id
            if verdict.accepted and not verdict.retried and not verdict.dead:
                self.record.completions.append((change, now))
                if lease.capability == REVIEW_CAPABILITY:
                    self.record.approvals.append(change)
            if verdict.retried:
                self.record.retries.append(change)
            if verdict.dead:
                self.record.dead_letters.append(change)
            if verdict.outcome is not None:
                self.record.terminal[change] = (verdict.outcome, now)


def build_app(dsn: str, pool_size: int) -> Any:
    from fastapi import FastAPI, HTTPException

    TEMPLATES.update(load_templates(packaged_template_texts()))
    pool = ConnectionPool(dsn, pool_size)
    with pool.store() as store:
        store.create_schema()
    recorder = BaselineRecorder()
    app = FastAPI(title="sdlcflow bench baseline coordinator")

    @app.post("/changes")
    def submit(body: dict[str, str]) -> dict[str, bool]:
        with pool.store() as store:
            store.plan(body["change_id"], body["repo"], body["template"], _now_ms())
        return {"planned": True}

    @app.post("/lease")
    def lease(body: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
        with pool.store() as store:
            leases = store.lease(body["owner"], body["capabilities"], int(body["limit"]), now)
        recorder.granted(leases, now)
        return {"leases": [lease.__dict__ for lease in leases]}

    @app.post("/complete")
    def complete(body: dict[str, Any]) -> dict[str, Any]:
        lease = Lease(**body["lease"])
        now = _now_ms()
        with pool.store() as store:
            verdict = store.complete(lease, now, ok=bool(body["ok"]), review=body.get("review"))
        recorder.completed(lease, verdict, now)
        if not verdict.accepted:
            raise HTTPException(409, "stale lease: the task was re-leased with a newer epoch")
        return verdict.__dict__

    @app.get("/terminal")
    def terminal() -> dict[str, Any]:
        with recorder.lock:
            return {"terminal": dict(recorder.record.terminal)}

    @app.get("/record")
    def record() -> dict[str, Any]:
        with recorder.lock:
            r = recorder.record
            return {
                "grants": r.grants,
                "lease_waits": r.lease_waits,
                "completions": r.completions,
                "retries": r.retries,
                "dead_letters": r.dead_letters,
                "approvals": r.approvals,
                "terminal": r.terminal,
            }

    return app


def serve(dsn: str, port: int, pool_size: int) -> None:
    import uvicorn

    uvicorn.run(build_app(dsn, pool_size), host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------------------ HTTP agents


async def run_agents(url: str, concurrency: int, latency_ms: float, spec: MixSpec) -> None:
    """One poller leases up to the free slots per request; each task runs as its own coroutine."""
    import httpx

    owner = f"bench-baseline-agent-{os.getpid()}"
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (2, 15):
        loop.add_signal_handler(sig, stopping.set)
    running: set[asyncio.Task[None]] = set()
    slot_freed = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def work(lease: dict[str, Any]) -> None:
            try:
                if latency_ms > 0:
                    await asyncio.sleep(latency_ms / 1000)
                change, step = lease["change_id"], lease["step"]
                failed = should_fail(
                    spec, change, template_for(spec, change), step, lease["attempt"]
                )
                review = says_review(spec, change) if lease["capability"] == "policy" else None
                await client.post(
                    "/complete", json={"lease": lease, "ok": not failed, "review": review}
                )
            finally:
                slot_freed.set()

        while not stopping.is_set():
            slots = concurrency - len(running)
            if slots <= 0:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            answer = await client.post(
                "/lease",
                json={"owner": owner, "capabilities": BASELINE_CAPABILITIES, "limit": slots},
            )
            leases = answer.json()["leases"]
            for lease in leases:
                task = asyncio.ensure_future(work(lease))
                running.add(task)
                task.add_done_callback(running.discard)
            if not leases:
                await asyncio.sleep(POLL_IDLE_S)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the PostgreSQL lease-table baseline")
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("serve", help="the HTTP coordinator")
    server.add_argument("--dsn", required=True)
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--pool", type=int, default=8, help="database connections")
    workers = sub.add_parser("agents", help="HTTP agents following the mix")
    workers.add_argument("--url", required=True)
    workers.add_argument("--concurrency", type=int, default=64)
    workers.add_argument("--latency-ms", type=float, default=0.0)
    workers.add_argument("--seed", default=MixSpec().seed)
    workers.add_argument("--retry-rate", type=float, default=MixSpec().retry_rate)
    workers.add_argument("--dead-rate", type=float, default=MixSpec().dead_rate)
    workers.add_argument("--review-rate", type=float, default=MixSpec().review_rate)
    args = parser.parse_args(argv)
    if args.role == "serve":
        serve(args.dsn, args.port, args.pool)
    else:
        spec = MixSpec(
            seed=args.seed,
            retry_rate=args.retry_rate,
            dead_rate=args.dead_rate,
            review_rate=args.review_rate,
        ).checked()
        asyncio.run(run_agents(args.url, args.concurrency, args.latency_ms, spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
