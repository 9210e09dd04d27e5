"""Fetching the server jars from Maven Central once, into the cache dir outside the repo.

Each server has its own pom (package data) and its own jar directory: Kafka and Cassandra pull
conflicting jackson/snakeyaml versions. A directory is used only once a marker says Maven
finished, so an interrupted download is redone instead of half-used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from sdlcflow.infra.errors import JarFetchFailed
from sdlcflow.infra.locks import file_lock
from sdlcflow.infra.toolchain import find_maven

ServerName = Literal["kafka", "cassandra"]
SERVERS: tuple[ServerName, ...] = ("kafka", "cassandra")

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_MARKER = ".complete"
FETCH_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class JarSet:
    """The jar directory of one server, ready to put on a classpath."""

    server: ServerName
    version: str
    directory: Path

    @property
    def classpath(self) -> str:
        return str(self.directory / "*")

    def find(self, prefix: str) -> Path:
        """The one jar whose file name starts with `prefix` (e.g. the jamm agent)."""
        matches = sorted(self.directory.glob(f"{prefix}*.jar"))
        if not matches:
            raise JarFetchFailed(
                f"{prefix}*.jar is missing from {self.directory}; delete that directory "
                f"so the next `sdlcflow up` fetches the {self.server} jars again"
            )
        return matches[0]


def pom_text(server: ServerName) -> str:
    """The pom shipped with sdlcflow that names the server's artifacts."""
    return (resources.files("sdlcflow.infra") / f"{server}-pom.xml").read_text()


def pom_version(pom: str) -> str:
    """The version of the pom's first dependency: the server release it fetches."""
    version = ET.fromstring(pom).find("m:dependencies/m:dependency/m:version", _POM_NS)
    if version is None or not version.text:
        raise JarFetchFailed("the server pom names no dependency version; reinstall sdlcflow")
    return version.text.strip()


def jar_set_for(server: ServerName, cache_dir: Path) -> JarSet:
    """Where the jars of this pom live (whether fetched yet or not)."""
    pom = pom_text(server)
    digest = hashlib.sha256(pom.encode()).hexdigest()[:10]
    version = pom_version(pom)
    return JarSet(server, version, cache_dir / "jars" / f"{server}-{version}-{digest}" / "lib")


def jars_present(jars: JarSet) -> bool:
    return (jars.directory.parent / _MARKER).is_file()


def ensure_jars(server: ServerName, cache_dir: Path, java_home: Path) -> JarSet:
    """The server's jars, fetched with Maven first if this pom's set is not complete yet."""
    jars = jar_set_for(server, cache_dir)
    if jars_present(jars):
        return jars
    root = jars.directory.parent
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock", timeout_s=FETCH_TIMEOUT_S, what=f"the {server} jar download"):
        if not jars_present(jars):  # another process may have fetched them meanwhile
            _fetch(server, jars, java_home)
    return jars


def _fetch(server: ServerName, jars: JarSet, java_home: Path) -> None:
    root = jars.directory.parent
    (root / "pom.xml").write_text(pom_text(server))
    staging = root / "lib.partial"
    command = [
        str(find_maven()),
        "-q",
        "-B",
        "-f",
        str(root / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    env = {**os.environ, "JAVA_HOME": str(java_home)}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise JarFetchFailed(
            f"Maven did not finish fetching the {server} jars within {FETCH_TIMEOUT_S:.0f} s; "
            "check that Maven Central is reachable and run `sdlcflow up` again"
        ) from exc
    if done.returncode != 0 or not any(staging.glob("*.jar")):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise JarFetchFailed(
            f"Maven could not fetch the {server} {jars.version} jars (exit {done.returncode}); "
            f"its output ends with:\n{tail}\nFix the cause (network, proxy in ~/.m2/settings.xml) "
            "and run `sdlcflow up` again"
        )
    if jars.directory.exists():
        _remove_tree(jars.directory)
    staging.rename(jars.directory)
    (root / _MARKER).write_text(f"{server} {jars.version}\n")


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
