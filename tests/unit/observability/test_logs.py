"""Structured logs: ids bound per context, JSON lines, failures kept, successes sampled."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from sdlcflow.observability.logs import (
    BindFilter,
    JsonFormatter,
    LogConfigError,
    SamplingFilter,
    bind,
    bound,
    dict_config,
)


def _logger(stream: io.StringIO, rate: float = 1.0, name: str = "test.obs") -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.addFilter(BindFilter())
    handler.addFilter(SamplingFilter(rate, draw=lambda: 0.99))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestBinding:
    """Bound ids land on every record of the block, and only there."""

    def test_bound_ids_appear_on_json_records(self) -> None:
        stream = io.StringIO()
        log = _logger(stream)
        with bind(trace_id="t" * 32, change_id="c1"), bind(task_id="task-1", agent_id="lint-1"):
            log.info("lease granted")
        log.info("outside")
        inside, outside = _lines(stream)
        assert inside["message"] == "lease granted"
        assert (inside["trace_id"], inside["change_id"]) == ("t" * 32, "c1")
        assert (inside["task_id"], inside["agent_id"]) == ("task-1", "lint-1")
        assert "trace_id" not in outside

    def test_an_adapters_extra_wins_over_the_context(self) -> None:
        stream = io.StringIO()
        adapter = logging.LoggerAdapter(_logger(stream), {"task_id": "from-adapter"})
        with bind(task_id="from-context"):
            adapter.info("x")
        assert _lines(stream)[0]["task_id"] == "from-adapter"

    async def test_each_asyncio_task_sees_its_own_ids(self) -> None:
        async def seen(task_id: str) -> str:
            with bind(task_id=task_id):
                await asyncio.sleep(0)
                return bound()["task_id"]

        assert await asyncio.gather(seen("a"), seen("b")) == ["a", "b"]

    def test_binding_an_unknown_field_names_the_known_ones(self) -> None:
        with pytest.raises(LogConfigError, match="trace_id"), bind(user="x"):
            pass


class TestSampling:
    """Failures are always kept in full; successes are kept per trace at the sample rate."""

    def test_failures_are_kept_with_their_exception_at_rate_zero(self) -> None:
        stream = io.StringIO()
        log = _logger(stream, rate=0.0)
        log.info("success, dropped")
        try:
            raise RuntimeError("disk full")
        except RuntimeError:
            log.exception("task failed")
        log.warning("lease lost")
        lines = _lines(stream)
        assert [line["message"] for line in lines] == ["task failed", "lease lost"]
        assert "RuntimeError: disk full" in str(lines[0]["exception"])

    def test_a_sampled_trace_keeps_all_its_successes(self) -> None:
        stream = io.StringIO()
        log = _logger(stream, rate=0.5)
        for n in range(200):
            trace = f"{n:032x}"
            with bind(trace_id=trace):
                log.info("one")
                log.info("two")
        per_trace: dict[object, int] = {}
        for line in _lines(stream):
            per_trace[line["trace_id"]] = per_trace.get(line["trace_id"], 0) + 1
        assert set(per_trace.values()) == {2}  # never half a trace
        assert 40 < len(per_trace) < 160  # about half the traces

    def test_a_rate_outside_zero_to_one_is_refused(self) -> None:
        with pytest.raises(LogConfigError, match=r"between 0\.0 and 1\.0"):
            SamplingFilter(1.5)


class TestDictConfig:
    """The dictConfig document installs the same structured handler (faust workers use it)."""

    def test_dict_config_installs_the_json_handler(self) -> None:
        import logging.config

        root = logging.getLogger()
        saved = (list(root.handlers), root.level)
        try:
            logging.config.dictConfig(dict_config("json", level="warning"))
            (handler,) = root.handlers
            assert isinstance(handler.formatter, JsonFormatter)
            assert root.level == logging.WARNING
        finally:
            root.handlers, _ = saved
            root.setLevel(saved[1])
