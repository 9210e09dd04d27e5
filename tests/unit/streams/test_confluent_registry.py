"""With a Schema Registry configured, ids come from it under RecordNameStrategy subjects."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from sdlcflow.settings import Settings
from sdlcflow.streams.codec import Codec, DecodeError, DecodeReason
from sdlcflow.streams.registry import ConfluentSchemaRegistry, registry_from_settings
from sdlcflow.streams.testing import sample_event
from sdlcflow.streams.wire import EventCodec


class _FakeRegistry:
    """The two Schema Registry endpoints the codec uses, in memory."""

    def __init__(self) -> None:
        self.subjects: dict[str, list[int]] = {}
        self.schemas: dict[int, str] = {}

    def register(self, subject: str, schema: str) -> int:
        known = {text: schema_id for schema_id, text in self.schemas.items()}
        schema_id = known.get(schema, 100 + len(self.schemas))
        self.schemas[schema_id] = schema
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id


def _handler(fake: _FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            parts = urlparse(self.path).path.strip("/").split("/")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                self._reply(200, {"id": fake.register(unquote(parts[1]), body["schema"])})
            else:
                self._reply(404, {"error_code": 404, "message": "not found"})

        def do_GET(self) -> None:
            parts = urlparse(self.path).path.strip("/").split("/")
            if parts[:2] == ["schemas", "ids"] and int(parts[2]) in fake.schemas:
                self._reply(200, {"schema": fake.schemas[int(parts[2])]})
            else:
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    return Handler


@pytest.fixture
def fake_registry() -> Iterator[tuple[str, _FakeRegistry]]:
    fake = _FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


class TestConfluentRegistry:
    """Frames carry the registry's ids; subjects are record names; unknown ids are refused."""

    def test_events_are_registered_under_their_record_name_and_framed_with_its_id(
        self, fake_registry: tuple[str, _FakeRegistry]
    ) -> None:
        url, fake = fake_registry
        codec = EventCodec(Codec(registry=ConfluentSchemaRegistry(url)))
        event = sample_event("TaskFailed")
        frame = codec.encode(event)
        assert list(fake.subjects) == ["sdlcflow.events.TaskFailed"]
        assert int.from_bytes(frame[1:5], "big") == fake.subjects["sdlcflow.events.TaskFailed"][0]
        reader = EventCodec(Codec(registry=ConfluentSchemaRegistry(url)))
        assert reader.decode(frame) == event

    def test_an_id_the_registry_does_not_know_is_unknown(
        self, fake_registry: tuple[str, _FakeRegistry]
    ) -> None:
        url, _fake = fake_registry
        codec = EventCodec(Codec(registry=ConfluentSchemaRegistry(url)))
        with pytest.raises(DecodeError) as caught:
            codec.decode(b"\x00\x00\x00\x03\x09" + b"\x00" * 10)
        assert caught.value.reason is DecodeReason.UNKNOWN_SCHEMA_ID

    def test_the_registry_url_setting_selects_the_schema_registry(
        self, fake_registry: tuple[str, _FakeRegistry], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SDLCFLOW_SCHEMA_REGISTRY_URL", fake_registry[0])
        assert isinstance(registry_from_settings(Settings.from_env()), ConfluentSchemaRegistry)

    def test_an_unknown_id_is_not_asked_for_again_at_once(
        self, fake_registry: tuple[str, _FakeRegistry]
    ) -> None:
        url, _fake = fake_registry
        registry = ConfluentSchemaRegistry(url)
        asked: list[int] = []
        lookup = registry.schema_for

        def counting(schema_id: int) -> Any:
            asked.append(schema_id)
            return lookup(schema_id)

        registry.schema_for = counting  # type: ignore[method-assign]
        codec = EventCodec(Codec(registry=registry))
        for _ in range(3):
            with pytest.raises(DecodeError):
                codec.decode(b"\x00\x00\x00\x03\x09" + b"\x00" * 10)
        assert asked == [777]
