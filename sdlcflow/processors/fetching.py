"""Keep the worker's consumer from fetching the changelogs it writes itself.

faust "pauses" a table's active changelog partitions only in its own bookkeeping: it stops
handing their records to the tables, but its aiokafka consumer stays subscribed and keeps
fetching them. The coordinator writes its changelogs on every batch (`shell.py`), so nearly
every fetch response carried changelog records that nobody would consume. aiokafka sends no
new fetch to a broker while any partition of it holds records younger than its
`prefetch_backoff` (100 ms) that the application has not taken yet, so each of those responses
froze all input partitions for 100 ms: a lease request that arrived meanwhile waited for the
next fetch. That was the coordinator's ~100 ms tail at any load (measured with aiokafka's
fetcher instrumented: inputs drained within 1 ms of their fetch, changelog records never, and
the next fetch request went out 97-100 ms after such a response).

`stop_fetching_own_changelogs` pauses them in aiokafka itself once recovery is done (faust's
`on_rebalance_complete`). A rebalance gives the consumer a new assignment whose partitions start
unpaused, so recovery after it reads the changelogs as before; standby partitions (another
worker's tables) are not touched and are still read. faust's livelock check reports every
assigned partition without a fetch for `stream_processing_timeout` (5 min) as an error, every
7 s; for the partitions paused here that is by design, so `PausedChangelogReports` drops those
reports (and only those: an input partition that stops being fetched is still reported).
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

# faust's consumer thread logs its "no fetch for this partition" reports here
FAUST_AIOKAFKA_LOGGER = "faust.transport.drivers.aiokafka"
NO_FETCH_REPORTS = ("has not sent fetch request for %r", "stopped fetching from %r")


class PausedChangelogReports(logging.Filter):
    """Drops faust's "no fetch" reports about the changelog partitions this worker paused."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: frozenset[tuple[str, int]] = frozenset()

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not any(r in record.msg for r in NO_FETCH_REPORTS):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        tp = args[0] if args else None
        return not (isinstance(tp, tuple) and tuple(tp[:2]) in self.paused)


_REPORTS = PausedChangelogReports()


def own_changelog_partitions(app: faust.App) -> set[TopicPartition]:
    """The changelog partitions of tables this worker is active for (it writes them)."""
    changelogs = app.tables.changelog_topics
    return {
        TopicPartition(tp.topic, tp.partition)
        for tp in app.assignor.assigned_actives()
        if tp.topic in changelogs
    }


async def stop_fetching_own_changelogs(app: Any, /, *_args: Any, **_kwargs: Any) -> None:
    """Pause this worker's own changelog partitions in its aiokafka consumer (see module).

    Only an optimisation: a failure is logged, never raised into faust's recovery."""
    _REPORTS.paused = frozenset()  # what an earlier assignment paused is not paused now
    wanted = own_changelog_partitions(app)
    thread = getattr(app.consumer, "_thread", None)
    if not wanted or thread is None or not hasattr(thread, "_ensure_consumer"):
        return
    generation = getattr(app, "rebalancing_count", 0)
    try:
        # aiokafka runs on the consumer thread's loop: pause creates a future of that loop
        paused = await thread.call_thread(
            _pause_assigned, app, generation, thread._ensure_consumer(), wanted
        )
    except Exception as exc:  # e.g. the consumer stopped meanwhile
        log.warning("could not stop fetching the worker's own changelogs: %s", exc)
        return
    _REPORTS.paused = frozenset((tp.topic, tp.partition) for tp in paused)
    faust_log = logging.getLogger(FAUST_AIOKAFKA_LOGGER)
    if _REPORTS not in faust_log.filters:
        faust_log.addFilter(_REPORTS)
    log.debug("stopped fetching %d own changelog partitions", len(paused))


async def resume_changelog_reports(_app: Any, /, *_args: Any, **_kwargs: Any) -> None:
    """On revocation or assignment: a new assignment starts unpaused, so faust's "no fetch"
    reports about any of its partitions (a recovery or standby read that stalled) count again."""
    _REPORTS.paused = frozenset()


async def _pause_assigned(
    app: Any, generation: int, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> set[TopicPartition]:
    """On the consumer thread: pause, unless another rebalance began since recovery ended (its
    assignment is not the one recovered, and a pause would stop its recovery's reads). faust
    counts rebalances as they start; `rebalancing` itself is still set here, since faust sends
    `on_rebalance_complete` before it ends the rebalance."""
    if getattr(app, "rebalancing_count", 0) != generation:
        return set()
    assigned: set[TopicPartition] = partitions & consumer.assignment()
    consumer.pause(*assigned)
    return assigned
