"""How a coordinator worker is configured: command-line options over environment over defaults.

`faust -A sdlcflow.processors.app worker` has no options of ours, so every setting also has an
environment variable; `sdlcflow run processors` sets the same fields from its options.

- SDLCFLOW_PROCESSORS_APP_ID (sdlcflow-coordinator): faust app id = consumer group and the
  prefix of the changelog topics.
- SDLCFLOW_PROCESSORS_STORE (rocksdb): table store, rocksdb (keeps offsets) or memory.
- SDLCFLOW_PROCESSORS_DATA_DIR ($SDLCFLOW_DATA_DIR/processors): where the tables live.
- SDLCFLOW_TRUSTED_ISSUERS (`<data dir>/trusted-issuers.json`): {key id: public key} JSON.
- SDLCFLOW_TICK_INTERVAL_MS (500): how often each worker ticks the partitions it owns.
- SDLCFLOW_LEASE_TTL_MS (30000): how long a grant or a heartbeat keeps a lease alive.
- SDLCFLOW_BATCH_MAX (500): inputs per batch (one publish flush, one table write per repo).
- SDLCFLOW_BATCH_WITHIN_MS (0): 0 hands a batch over as soon as the previous one is done
  (`batching.take_ready`); N > 0 uses faust's `take_events`, which waits N ms to fill each batch.
- SDLCFLOW_MAX_CLOCK_SKEW_MS (30000): inputs dated further in the future are dead-lettered.
- SDLCFLOW_PROCESSORS_REPOS (all): comma-separated glob patterns of the repositories this
  coordinator serves; records of other repositories are skipped unread (tests, sharding).
- SDLCFLOW_PROCESSORS_OFFSET_RESET (earliest): where a new consumer group starts.
- SDLCFLOW_CREDENTIAL_GRACE_MS (300000): a credential is refused this long after its expiry,
  whatever date the event claims.
- SDLCFLOW_TEMPLATES_DIR (unset): a directory of pipeline templates planned with beside the
  packaged ones (sdlcflow/pipelines.py); every worker of one app id must read the same one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from sdlcflow.errors import SdlcflowError
from sdlcflow.pipelines import TEMPLATES_DIR_ENV, configured_directory
from sdlcflow.settings import Settings

DEFAULT_APP_ID = "sdlcflow-coordinator"


class ConfigError(SdlcflowError):
    """A processor setting has a value that cannot work."""


class StoreKind(StrEnum):
    ROCKSDB = "rocksdb"
    MEMORY = "memory"


@dataclass(frozen=True)
class ProcessorConfig:
    """Everything one coordinator worker needs to know."""

    app_id: str
    bootstrap: str
    partitions: int
    store: StoreKind
    data_dir: Path
    trusted_issuers: Path
    tick_interval_ms: int = 500
    lease_ttl_ms: int = 30_000
    batch_max: int = 500
    batch_within_ms: int = 0
    max_clock_skew_ms: int = 30_000
    credential_grace_ms: int = 300_000
    repos: tuple[str, ...] = ()
    offset_reset: str = "earliest"
    templates_dir: Path | None = None

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> ProcessorConfig:
        settings = settings or Settings.from_env()
        data_dir = Path(_env("SDLCFLOW_PROCESSORS_DATA_DIR", str(settings.data_dir / "processors")))
        issuers = os.environ.get("SDLCFLOW_TRUSTED_ISSUERS", "").strip()
        return cls(
            app_id=_env("SDLCFLOW_PROCESSORS_APP_ID", DEFAULT_APP_ID),
            bootstrap=settings.kafka_bootstrap,
            partitions=settings.partitions,
            store=parse_store(_env("SDLCFLOW_PROCESSORS_STORE", StoreKind.ROCKSDB.value)),
            data_dir=data_dir,
            trusted_issuers=Path(issuers) if issuers else default_issuers_file(settings),
            tick_interval_ms=_int_env("SDLCFLOW_TICK_INTERVAL_MS", 500),
            lease_ttl_ms=_int_env("SDLCFLOW_LEASE_TTL_MS", 30_000),
            batch_max=_int_env("SDLCFLOW_BATCH_MAX", 500),
            batch_within_ms=_int_env("SDLCFLOW_BATCH_WITHIN_MS", 0),
            max_clock_skew_ms=_int_env("SDLCFLOW_MAX_CLOCK_SKEW_MS", 30_000),
            credential_grace_ms=_int_env("SDLCFLOW_CREDENTIAL_GRACE_MS", 300_000),
            repos=tuple(p for p in _env("SDLCFLOW_PROCESSORS_REPOS", "").split(",") if p),
            offset_reset=_env("SDLCFLOW_PROCESSORS_OFFSET_RESET", "earliest"),
            templates_dir=configured_directory(),
        ).checked()

    def with_options(self, **options: Any) -> ProcessorConfig:
        """A copy with the options that were given (None means not given)."""
        given = {name: value for name, value in options.items() if value is not None}
        return replace(self, **given).checked()

    def checked(self) -> ProcessorConfig:
        if not self.app_id or any(c.isspace() for c in self.app_id):
            raise ConfigError(f"app id {self.app_id!r} must be a non-empty name without spaces")
        for name in ("partitions", "tick_interval_ms", "lease_ttl_ms", "batch_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} is {getattr(self, name)}; it must be at least 1")
        if self.offset_reset not in ("earliest", "latest"):
            raise ConfigError(f"offset reset {self.offset_reset!r}: use earliest or latest")
        if self.batch_within_ms < 0:
            raise ConfigError("batch_within_ms must not be negative")
        return self

    def env(self) -> dict[str, str]:
        """The environment that makes `ProcessorConfig.from_env()` return this config."""
        return {
            "SDLCFLOW_PROCESSORS_APP_ID": self.app_id,
            "SDLCFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "SDLCFLOW_PARTITIONS": str(self.partitions),
            "SDLCFLOW_PROCESSORS_STORE": self.store.value,
            "SDLCFLOW_PROCESSORS_DATA_DIR": str(self.data_dir),
            "SDLCFLOW_TRUSTED_ISSUERS": str(self.trusted_issuers),
            "SDLCFLOW_TICK_INTERVAL_MS": str(self.tick_interval_ms),
            "SDLCFLOW_LEASE_TTL_MS": str(self.lease_ttl_ms),
            "SDLCFLOW_BATCH_MAX": str(self.batch_max),
            "SDLCFLOW_BATCH_WITHIN_MS": str(self.batch_within_ms),
            "SDLCFLOW_MAX_CLOCK_SKEW_MS": str(self.max_clock_skew_ms),
            "SDLCFLOW_CREDENTIAL_GRACE_MS": str(self.credential_grace_ms),
            "SDLCFLOW_PROCESSORS_REPOS": ",".join(self.repos),
            "SDLCFLOW_PROCESSORS_OFFSET_RESET": self.offset_reset,
            TEMPLATES_DIR_ENV: str(self.templates_dir or ""),
        }

    @property
    def state_table(self) -> str:
        return "repo-state"

    @property
    def index_table(self) -> str:
        return "active-repos"

    def changelog_topic(self, table: str) -> str:
        """faust's name for a table's changelog topic."""
        return f"{self.app_id}-{table}-changelog"


def default_issuers_file(settings: Settings) -> Path:
    return settings.data_dir / "trusted-issuers.json"


def parse_store(value: str) -> StoreKind:
    try:
        return StoreKind(value.strip().lower())
    except ValueError:
        options = ", ".join(kind.value for kind in StoreKind)
        raise ConfigError(f"store {value!r} is unknown; choose one of: {options}") from None


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set a number or unset it") from None
