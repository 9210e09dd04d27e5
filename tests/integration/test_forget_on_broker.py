"""Deleting a run's footprint from the shared broker: exactly the faust app's internal topics and
groups (named `<app id>-...`), never another run's, even one whose app id starts the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from sdlcflow.infra.topics import BrokerFootprint, ensure_topics, forget_on_broker
from sdlcflow.streams.topics import TopicSpec

pytestmark = pytest.mark.integration

WAIT_S = 30.0


def _commit(bootstrap: str, group: str, topic: str) -> None:
    """Make `group` exist on the broker: commit an offset in it, as a stopped app leaves one."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        consumer.close()


def _groups(admin: AdminClient) -> set[str]:
    return {g.group_id for g in admin.list_consumer_groups().result(timeout=WAIT_S).valid}


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.2)


class TestForgetOnBroker:
    """An app id's changelogs, leader topic and groups go; everything else on the broker stays."""

    def test_an_apps_internal_topics_and_groups_are_deleted_and_other_runs_are_left_alone(
        self, kafka_bootstrap: str, admin: AdminClient, footprint: BrokerFootprint
    ) -> None:
        app_id = f"test-forget-{uuid.uuid4().hex[:8]}"
        own = [f"{app_id}-repo-state-changelog", f"{app_id}-__assignor-__leader"]
        # another run's app id that merely starts with ours, and a topic naming ours inside
        others = [
            footprint.topic(f"{app_id}0-repo-state-changelog"),
            footprint.topic(f"other-{app_id}-changelog"),
        ]
        footprint.app(app_id)  # should the assertions fail, the teardown deletes the rest
        ensure_topics(admin, [TopicSpec(name, 1, {}) for name in own + others])
        own_groups = [app_id, f"{app_id}-agents"]
        other_group = footprint.group(f"{app_id}0")
        for group in [*own_groups, other_group]:
            _commit(kafka_bootstrap, group, others[0])

        problems = forget_on_broker(kafka_bootstrap, app_ids=[app_id])

        assert problems == []

        def own_topics_gone() -> bool:
            return not set(own) & set(admin.list_topics(timeout=WAIT_S).topics)

        _wait_until(own_topics_gone, f"{own} to be deleted")
        assert set(others) <= set(admin.list_topics(timeout=WAIT_S).topics)
        groups = _groups(admin)
        assert not set(own_groups) & groups
        assert other_group in groups

    def test_what_is_already_gone_is_no_problem(self, kafka_bootstrap: str) -> None:
        missing = f"test-forget-{uuid.uuid4().hex[:8]}"

        problems = forget_on_broker(kafka_bootstrap, topics=[missing], groups=[missing])

        assert problems == []
