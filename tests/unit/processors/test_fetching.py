"""After recovery a worker stops fetching the changelogs it writes, and only those, and faust's
reports that they are not fetched are dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.types import TP

from sdlcflow.processors import fetching
from sdlcflow.processors.fetching import (
    FAUST_AIOKAFKA_LOGGER,
    PausedChangelogReports,
    own_changelog_partitions,
    resume_changelog_reports,
    stop_fetching_own_changelogs,
)

STATES = "coord-repo-state-changelog"
INDEX = "coord-active-repos-changelog"


@dataclass
class FakeConsumer:
    """An aiokafka consumer's assignment and pause calls (the only parts used)."""

    assigned: set[TopicPartition]
    paused: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)


@dataclass
class FakeConsumerThread:
    """faust's consumer thread: runs a coroutine function on its loop (`call_thread`)."""

    consumer: FakeConsumer
    calls: int = 0

    def _ensure_consumer(self) -> FakeConsumer:
        return self.consumer

    async def call_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.calls += 1
        return await fun(*args)


@dataclass
class FakeAssignor:
    actives: set[TP]

    def assigned_actives(self) -> set[TP]:
        return set(self.actives)


@dataclass
class FakeTables:
    changelog_topics: set[str]


@dataclass
class FakeFaustConsumer:
    _thread: FakeConsumerThread


@dataclass
class FakeApp:
    assignor: FakeAssignor
    tables: FakeTables
    consumer: Any
    rebalancing: bool = True  # faust ends the rebalance after `on_rebalance_complete`
    rebalancing_count: int = 1


def _app(actives: set[TP], assigned: set[TopicPartition]) -> tuple[FakeApp, FakeConsumerThread]:
    thread = FakeConsumerThread(FakeConsumer(assigned))
    app = FakeApp(FakeAssignor(actives), FakeTables({STATES, INDEX}), FakeFaustConsumer(thread))
    return app, thread


@pytest.fixture(autouse=True)
def no_reports_filter_left() -> Iterator[None]:
    """The filter is module-global: each test starts and ends without it installed."""
    faust_log = logging.getLogger(FAUST_AIOKAFKA_LOGGER)
    yield
    faust_log.removeFilter(fetching._REPORTS)
    fetching._REPORTS.paused = frozenset()


class _MovedOn(FakeConsumerThread):
    """A consumer thread that sees a new rebalance begin before it runs the pause."""

    def __init__(self, consumer: FakeConsumer, app: FakeApp) -> None:
        super().__init__(consumer)
        self.app = app

    async def call_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.app.rebalancing_count += 1  # faust counts a rebalance as it starts
        return await super().call_thread(fun, *args)


class _Stopped(FakeConsumerThread):
    async def call_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        raise RuntimeError("consumer not started")


class TestOwnChangelogPartitions:
    def test_only_changelog_partitions_this_worker_is_active_for_are_its_own(self) -> None:
        actives = {TP(STATES, 0), TP(INDEX, 0), TP("sdlc.agent-events", 0), TP(STATES, 3)}
        app, _ = _app(actives, set())
        assert own_changelog_partitions(app) == {  # type: ignore[arg-type]
            TopicPartition(STATES, 0),
            TopicPartition(INDEX, 0),
            TopicPartition(STATES, 3),
        }


class TestStopFetchingOwnChangelogs:
    def test_own_changelog_partitions_are_paused_and_inputs_and_standbys_are_not(self) -> None:
        actives = {TP(STATES, 0), TP(INDEX, 0), TP("sdlc.agent-events", 0)}
        assigned = {
            TopicPartition(STATES, 0),
            TopicPartition(INDEX, 0),
            TopicPartition("sdlc.agent-events", 0),
            TopicPartition(STATES, 1),  # a standby: another worker's table, still read
        }
        app, thread = _app(actives, assigned)
        asyncio.run(stop_fetching_own_changelogs(app))
        assert thread.consumer.paused == {TopicPartition(STATES, 0), TopicPartition(INDEX, 0)}

    def test_partitions_the_consumer_no_longer_holds_are_not_paused(self) -> None:
        app, thread = _app({TP(STATES, 0), TP(STATES, 1)}, {TopicPartition(STATES, 1)})
        asyncio.run(stop_fetching_own_changelogs(app))
        assert thread.consumer.paused == {TopicPartition(STATES, 1)}

    def test_the_pause_runs_on_the_consumer_thread(self) -> None:
        app, thread = _app({TP(STATES, 0)}, {TopicPartition(STATES, 0)})
        asyncio.run(stop_fetching_own_changelogs(app))
        assert thread.calls == 1

    def test_a_worker_without_own_changelogs_asks_the_consumer_nothing(self) -> None:
        app, thread = _app({TP("sdlc.agent-events", 0)}, {TopicPartition("sdlc.agent-events", 0)})
        asyncio.run(stop_fetching_own_changelogs(app))
        assert thread.calls == 0 and not thread.consumer.paused


def _report(template: str, tp: TP) -> logging.LogRecord:
    """A faust consumer-thread log record as mode's CompositeLogger makes it."""
    return logging.LogRecord(
        FAUST_AIOKAFKA_LOGGER, logging.ERROR, __file__, 1,
        f"[^---AIOKafkaConsumerThread]: {template}", (tp, "6.00 minutes ago"), None,
    )  # fmt: skip


class TestPausedChangelogReports:
    """faust's "no fetch" reports are dropped for the paused changelogs, and only for them."""

    def _filter(self) -> PausedChangelogReports:
        reports = PausedChangelogReports()
        reports.paused = frozenset({(STATES, 0)})
        return reports

    def test_a_no_fetch_report_about_a_paused_changelog_is_dropped(self) -> None:
        reports = self._filter()
        since_start = "Aiokafka has not sent fetch request for %r since start (started %s)"
        stopped = "Aiokafka stopped fetching from %r (last done %s)"
        assert not reports.filter(_report(since_start, TP(STATES, 0)))
        assert not reports.filter(_report(stopped, TP(STATES, 0)))

    def test_a_no_fetch_report_about_an_input_partition_is_kept(self) -> None:
        reports = self._filter()
        stopped = "Aiokafka stopped fetching from %r (last done %s)"
        assert reports.filter(_report(stopped, TP("sdlc.agent-events", 0)))
        assert reports.filter(_report(stopped, TP(STATES, 1)))

    def test_other_messages_about_a_paused_changelog_are_kept(self) -> None:
        assert self._filter().filter(_report("Seek %r to offset %s", TP(STATES, 0)))


class TestReportsFilterInstalled:
    def test_pausing_installs_the_filter_on_faust_consumer_thread_logger(self) -> None:
        app, _ = _app({TP(STATES, 0)}, {TopicPartition(STATES, 0)})
        asyncio.run(stop_fetching_own_changelogs(app))
        filters = logging.getLogger(FAUST_AIOKAFKA_LOGGER).filters
        reports = [f for f in filters if isinstance(f, PausedChangelogReports)]
        assert len(reports) == 1 and reports[0].paused == {(STATES, 0)}


class TestRebalanceSafety:
    """Pausing is an optimisation: it never touches a later assignment or breaks recovery."""

    def test_nothing_is_paused_when_another_rebalance_began_before_the_pause_ran(self) -> None:
        app, _ = _app({TP(STATES, 0)}, {TopicPartition(STATES, 0)})
        moved_on = _MovedOn(FakeConsumer({TopicPartition(STATES, 0)}), app)
        app.consumer = FakeFaustConsumer(moved_on)
        asyncio.run(stop_fetching_own_changelogs(app))
        assert not moved_on.consumer.paused and fetching._REPORTS.paused == frozenset()

    def test_a_consumer_that_cannot_pause_is_logged_not_raised(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        app, _ = _app({TP(STATES, 0)}, {TopicPartition(STATES, 0)})
        app.consumer = FakeFaustConsumer(_Stopped(FakeConsumer({TopicPartition(STATES, 0)})))
        asyncio.run(stop_fetching_own_changelogs(app))
        assert "could not stop fetching" in caplog.text

    def test_reports_count_again_once_the_assignment_changes(self) -> None:
        app, _ = _app({TP(STATES, 0)}, {TopicPartition(STATES, 0)})
        asyncio.run(stop_fetching_own_changelogs(app))
        assert fetching._REPORTS.paused == {(STATES, 0)}
        asyncio.run(resume_changelog_reports(app))
        assert fetching._REPORTS.paused == frozenset()

    def test_a_worker_left_without_own_changelogs_drops_no_reports(self) -> None:
        app, _ = _app({TP(STATES, 0)}, {TopicPartition(STATES, 0)})
        asyncio.run(stop_fetching_own_changelogs(app))
        standby_only, _ = _app(set(), {TopicPartition(STATES, 0)})
        asyncio.run(stop_fetching_own_changelogs(standby_only))
        assert fetching._REPORTS.paused == frozenset()
