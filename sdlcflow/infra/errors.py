"""Why the local servers could not be had; every message names the log to read or the fix."""

from __future__ import annotations

from sdlcflow.errors import SdlcflowError


class InfraError(SdlcflowError):
    """A server, its tooling or its schema could not be brought to a usable state."""


class ToolchainMissing(InfraError):
    """Java 17 or Maven, needed to fetch and run the server jars, is not installed."""


class JarFetchFailed(InfraError):
    """Maven could not fetch the server jars."""


class PortTaken(InfraError):
    """A port a local server needs is held by a process that is not that server."""


class ServerDied(InfraError):
    """A server process exited while starting or while we waited for it."""


class NotReady(InfraError):
    """A server did not answer within the time allowed."""


class MigrationFailed(InfraError):
    """A Cassandra schema migration could not be read or applied."""
