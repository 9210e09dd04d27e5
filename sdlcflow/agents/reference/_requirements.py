"""Reading and editing `name==version` pins in requirements files and lockfiles."""

from __future__ import annotations

import re

from sdlcflow.agents.reference._workspace import AgentWorkError

_PIN = re.compile(
    r"^(?P<indent>\s*)(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?"
    r"\s*(?P<op>==|>=|<=|~=|!=|>|<)\s*(?P<version>[^\s;#,]+)"
)


def normalize(name: str) -> str:
    """PEP 503 name: case-insensitive, runs of -_. are one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """Exact `==` pins by normalized package name."""
    return {name: version for name, (version, _line) in pinned_lines(text).items()}


def pinned_lines(text: str) -> dict[str, tuple[str, int]]:
    """Exact `==` pins by normalized package name, with the (1-based) line of each."""
    found = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _PIN.match(line)
        if match and match["op"] == "==":
            found[normalize(match["name"])] = (match["version"], number)
    return found


def set_pin(text: str, package: str, version: str) -> tuple[str, str | None]:
    """`text` with `package` pinned at `version`, and the version it had (None: not listed)."""
    wanted, old = normalize(package), None
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        match = _PIN.match(line)
        if not match or normalize(match["name"]) != wanted:
            continue
        if match["op"] != "==":
            raise AgentWorkError(
                f"{package} is constrained with {match['op']!r}, not pinned with '=='; pin it "
                "exactly before asking for an update"
            )
        old = match["version"]
        lines[index] = line[: match.start("version")] + version + line[match.end("version") :]
    return "".join(lines), old


def major(version: str) -> int | None:
    """The leading number of a version, or None when it does not start with one."""
    match = re.match(r"\d+", version)
    return int(match.group()) if match else None
