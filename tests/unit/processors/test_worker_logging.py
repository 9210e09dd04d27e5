"""The coordinator's faust worker logs at the level asked for: faust's terminal spinner, kept at
warning and above, set the root logger to DEBUG, so every debug call of aiokafka, faust and
mode built and handled a record (7% of the worker's CPU in a profile at 150 tasks/s)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdlcflow.observability import logs
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.shell import create_app
from sdlcflow.runner import quiet_worker


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["warning", "error", "info"])
def test_the_worker_leaves_debug_records_unmade_at_the_level_asked_for(
    level: str, tmp_path: Path, restored_logging: None
) -> None:
    config = ProcessorConfig.from_env().with_options(data_dir=tmp_path, app_id="test-logging")
    worker = quiet_worker(create_app(config), level, logs.dict_config("text", level=level))
    worker._setup_logging()
    root = logging.getLogger()
    assert root.level == logging.getLevelName(level.upper())
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
