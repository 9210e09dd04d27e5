"""The PostgreSQL baseline under the same load: its cluster, HTTP coordinator and HTTP agents
as processes of their own, driven by the same generator as sdlcflow."""

from __future__ import annotations

import time

import httpx

from sdlcflow.bench.baseline import PgCluster, _free_port
from sdlcflow.bench.load import LoadError
from sdlcflow.bench.mix import MixSpec
from sdlcflow.bench.processes import ProcessSet
from sdlcflow.bench.record import RunRecord

POLL_S = 0.3


class BaselineSystem:
    """HTTP coordinator + PostgreSQL lease table + polling agents."""

    name = "postgres-baseline"

    def __init__(
        self,
        procs: ProcessSet,
        *,
        agent_concurrency: int = 64,
        latency_ms: float = 0.0,
        mix: MixSpec | None = None,
    ) -> None:
        self.procs = procs
        self.cluster = PgCluster()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mix = mix or MixSpec()
        self.record = RunRecord()
        self._agent_args = (agent_concurrency, latency_ms)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> None:
        self.cluster.start()
        self.procs.start(
            "baseline-coordinator",
            ["-m", "sdlcflow.bench.baseline", "serve", "--dsn", self.cluster.dsn,
             "--port", str(self.port)],
        )  # fmt: skip
        self._wait_up(60.0)
        concurrency, latency_ms = self._agent_args
        self.procs.start(
            "baseline-agents",
            ["-m", "sdlcflow.bench.baseline", "agents", "--url", self.url,
             "--concurrency", str(concurrency), "--latency-ms", str(latency_ms),
             "--seed", self.mix.seed, "--retry-rate", str(self.mix.retry_rate),
             "--dead-rate", str(self.mix.dead_rate), "--review-rate", str(self.mix.review_rate)],
        )  # fmt: skip

    def _wait_up(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.procs.check()
            try:
                self.client.get("/terminal").raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise LoadError(f"the baseline coordinator did not answer on {self.url} in {timeout_s} s")

    # System protocol -----------------------------------------------------------------------

    def submit(self, change_id: str, repo: str, template: str, measured: bool) -> None:
        self.record.submit(change_id, int(time.time() * 1000), template, measured=measured)
        answer = self.client.post(
            "/changes", json={"change_id": change_id, "repo": repo, "template": template}
        )
        answer.raise_for_status()

    def flush(self) -> None:
        """Submissions are synchronous HTTP calls: nothing is queued."""

    def wait_finished(self, changes: set[str], timeout_s: float) -> set[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            terminal = self.client.get("/terminal").json()["terminal"]
            open_changes = {c for c in changes if c not in terminal}
            if not open_changes or time.monotonic() > deadline:
                self._collect()
                return open_changes
            self.check()
            time.sleep(POLL_S)

    def _collect(self) -> None:
        """Copy what the coordinator recorded into this side's record."""
        body = self.client.get("/record").json()
        record = self.record
        record.grants = [(c, at) for c, at in body["grants"]]
        record.lease_waits = [(c, ms) for c, ms in body["lease_waits"]]
        record.completions = [(c, at) for c, at in body["completions"]]
        record.retries = list(body["retries"])
        record.dead_letters = list(body["dead_letters"])
        record.approvals = list(body["approvals"])
        record.terminal = {c: (kind, at) for c, (kind, at) in body["terminal"].items()}

    def check(self) -> None:
        self.procs.check()

    def close(self) -> None:
        self.client.close()
        for name in ("baseline-agents", "baseline-coordinator"):
            self.procs.stop(name)
        self.cluster.stop()
