"""Finding the JDK and Maven that fetch and run the server jars.

Cassandra 5.0 runs on Java 17 exactly (4.1 does not start on 17, and 5.0 calls
System.setSecurityManager, which Java 24+ refuses), so we never trust whatever `java` is first
on PATH: we pick a JDK whose `release` file says 17 and use it for both servers.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from sdlcflow.infra.errors import ToolchainMissing

REQUIRED_JAVA_MAJOR = 17
_JVM_ROOT = Path("/usr/lib/jvm")
_INSTALL_HINT = (
    "install it (Debian/Ubuntu: `apt-get install -y openjdk-17-jdk-headless`) "
    "or point SDLCFLOW_JAVA_HOME at a Java 17 installation"
)


def java_major(java_home: Path) -> int | None:
    """The major version a JDK declares in its `release` file, or None if it is no JDK."""
    release = java_home / "release"
    if not (java_home / "bin" / "java").is_file() or not release.is_file():
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(errors="replace"), re.MULTILINE)
    return int(match.group(1)) if match else None


def _candidates() -> list[Path]:
    found: list[Path] = []
    for variable in ("SDLCFLOW_JAVA_HOME", "JAVA_HOME"):
        value = os.environ.get(variable, "").strip()
        if value:
            found.append(Path(value))
    if _JVM_ROOT.is_dir():
        found.extend(sorted(p for p in _JVM_ROOT.iterdir() if p.is_dir()))
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path).resolve().parent.parent)
    return found


def find_java17() -> Path:
    """JAVA_HOME of a Java 17 JDK; SDLCFLOW_JAVA_HOME wins when it is one."""
    explicit = os.environ.get("SDLCFLOW_JAVA_HOME", "").strip()
    if explicit and java_major(Path(explicit)) != REQUIRED_JAVA_MAJOR:
        raise ToolchainMissing(
            f"SDLCFLOW_JAVA_HOME={explicit} is not a Java {REQUIRED_JAVA_MAJOR} JDK "
            f"(no bin/java, or its release file names another version); "
            f"Cassandra 5.0 needs exactly Java {REQUIRED_JAVA_MAJOR}: {_INSTALL_HINT}"
        )
    for home in _candidates():
        if java_major(home) == REQUIRED_JAVA_MAJOR:
            return home
    raise ToolchainMissing(
        f"no Java {REQUIRED_JAVA_MAJOR} JDK found (looked at SDLCFLOW_JAVA_HOME, JAVA_HOME, "
        f"{_JVM_ROOT}/* and `java` on PATH); Cassandra 5.0 runs on Java {REQUIRED_JAVA_MAJOR} "
        f"only: {_INSTALL_HINT}"
    )


def find_maven() -> Path:
    """The `mvn` executable that fetches the server jars from Maven Central."""
    found = shutil.which("mvn")
    if found is None:
        raise ToolchainMissing(
            "Maven (`mvn`) is not on PATH; it fetches the Kafka and Cassandra jars once: "
            "install it (Debian/Ubuntu: `apt-get install -y maven`), or point "
            "SDLCFLOW_KAFKA_BOOTSTRAP / SDLCFLOW_CASSANDRA_HOSTS at running servers"
        )
    return Path(found)
