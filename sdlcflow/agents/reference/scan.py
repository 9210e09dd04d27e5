"""The security-scan agent: read every file of the tree at the leased head from git, look for
committed credentials, and check the lockfile's pins against known-vulnerable versions.

Findings never carry a secret in clear: only its rule, place and a redacted preview. The
report (sorted JSON) goes into the artifact store, so the same tree always gives the same
report digest. A line holding `sdlcflow-scan: allow` is not reported (a reviewed false
positive, visible in the diff that added it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sdlcflow.agents.reference._requirements import normalize, pinned_lines
from sdlcflow.agents.reference._workspace import Workspace
from sdlcflow.gitops import resolve, tree_files

ALLOW_MARK = "sdlcflow-scan: allow"
MAX_SCANNED_BYTES = 1_000_000  # larger blobs are data, not code or config


@dataclass(frozen=True)
class SecretRule:
    id: str
    pattern: re.Pattern[str]
    description: str


# Credential formats with a fixed, recognisable shape (few false positives by construction).
SECRET_RULES: tuple[SecretRule, ...] = (
    SecretRule(
        "aws-access-key-id",
        re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        "AWS access key id",
    ),
    SecretRule(
        "private-key",
        re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY-----"),
        "PEM private key",
    ),
    SecretRule("github-token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "GitHub token"),
    SecretRule("slack-token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), "Slack token"),
    SecretRule(
        "stripe-live-key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{24,}\b"), "Stripe live key"
    ),
    SecretRule("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), "Google API key"),
    SecretRule(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
        "signed JSON Web Token",
    ),
)


@dataclass(frozen=True)
class Advisory:
    """Versions of `package` in [introduced, fixed) are vulnerable (release numbers only)."""

    id: str
    package: str
    introduced: str
    fixed: str
    summary: str


# Published advisories for packages Python services commonly lock (GitHub Advisory Database).
KNOWN_ADVISORIES: tuple[Advisory, ...] = (
    Advisory(
        "CVE-2022-29217", "pyjwt", "1.5.0", "2.4.0",
        "algorithm confusion: a key can be used with an algorithm it was not meant for",
    ),
    Advisory(
        "CVE-2023-50782", "cryptography", "0", "42.0.0",
        "Bleichenbacher timing oracle in RSA PKCS#1 v1.5 decryption",
    ),
    Advisory(
        "CVE-2024-26130", "cryptography", "38.0.0", "42.0.4",
        "NULL dereference loading PKCS#12 with mismatched keys",
    ),
    Advisory(
        "CVE-2024-35195", "requests", "0", "2.32.0",
        "a Session keeps verify=False for later requests to the same host",
    ),
    Advisory(
        "CVE-2023-45803", "urllib3", "0", "1.26.18",
        "request body not removed on a 303 redirect",
    ),
    Advisory(
        "CVE-2024-22195", "jinja2", "0", "3.1.3",
        "xmlattr filter accepts keys with spaces (attribute injection)",
    ),
    Advisory(
        "CVE-2020-14343", "pyyaml", "0", "5.4",
        "arbitrary code execution through full_load / FullLoader",
    ),
    Advisory(
        "CVE-2024-6345", "setuptools", "0", "70.0.0",
        "remote code execution through package_index download functions",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    kind: str  # "secret" | "vulnerable-dependency"
    rule: str  # secret rule id or advisory id
    path: str
    line: int
    detail: str


@dataclass(frozen=True)
class ScanInput:
    """Scan the tree of `head`; `lockfiles` are read for `name==version` pins."""

    remote: Path
    head: str
    lockfiles: tuple[str, ...] = ("requirements.lock",)
    advisories: tuple[Advisory, ...] = KNOWN_ADVISORIES


@dataclass(frozen=True)
class ScanResult:
    sha: str
    files_scanned: int
    findings: tuple[Finding, ...]
    report: str  # digest of the JSON report in the artifact store
    rules: tuple[str, ...]  # every rule and advisory checked

    @property
    def passed(self) -> bool:
        return not self.findings

    def outputs(self) -> dict[str, str]:
        return {
            "sha": self.sha,
            "report": self.report,
            "findings": str(len(self.findings)),
            "passed": "true" if self.passed else "false",
        }


def scan(request: ScanInput, workspace: Workspace) -> ScanResult:
    """Scan the tree at `request.head`; store and return the report (findings sorted)."""
    sha = resolve(request.remote, request.head)
    files = tree_files(request.remote, sha)
    workspace.ensure_live()
    findings = sorted(
        [
            *find_secrets(files),
            *find_vulnerable_pins(files, request.lockfiles, request.advisories),
        ],
        key=lambda f: (f.path, f.line, f.rule),
    )
    rules = tuple(r.id for r in SECRET_RULES) + tuple(a.id for a in request.advisories)
    report = {
        "sha": sha,
        "files_scanned": len(files),
        "rules": list(rules),
        "findings": [asdict(f) for f in findings],
    }
    digest = workspace.store.put(json.dumps(report, indent=1, sort_keys=True).encode())
    return ScanResult(sha, len(files), tuple(findings), digest, rules)


def find_secrets(files: Mapping[str, bytes]) -> list[Finding]:
    """Every line of every text file matching a credential rule, with a redacted preview."""
    found = []
    for path, data in files.items():
        text = _text(data)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if ALLOW_MARK in line:
                continue
            for rule in SECRET_RULES:
                match = rule.pattern.search(line)
                if match:
                    found.append(
                        Finding(
                            "secret",
                            rule.id,
                            path,
                            number,
                            f"{rule.description}: {redact(match.group())}",
                        )
                    )
    return found


def find_vulnerable_pins(
    files: Mapping[str, bytes], lockfiles: Iterable[str], advisories: Iterable[Advisory]
) -> list[Finding]:
    """Every pin in the lockfiles that falls in an advisory's vulnerable range."""
    by_package: dict[str, list[Advisory]] = {}
    for advisory in advisories:
        by_package.setdefault(normalize(advisory.package), []).append(advisory)
    found = []
    for lockfile in lockfiles:
        text = _text(files.get(lockfile, b""))
        if not text:
            continue
        for package, (version, line) in pinned_lines(text).items():
            for advisory in by_package.get(package, ()):
                if affected(version, advisory):
                    found.append(
                        Finding(
                            "vulnerable-dependency",
                            advisory.id,
                            lockfile,
                            line,
                            f"{package}=={version} is affected ({advisory.introduced} <= v < "
                            f"{advisory.fixed}): {advisory.summary}; upgrade to "
                            f">= {advisory.fixed}",
                        )
                    )
    return found


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version (`2.8.0rc1` -> (2, 8, 0)), trailing zeros dropped."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip().lstrip("vV"))
    numbers = [int(part) for part in match.group().split(".")] if match else [0]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def affected(version: str, advisory: Advisory) -> bool:
    return release(advisory.introduced) <= release(version) < release(advisory.fixed)


def redact(secret: str) -> str:
    """Enough to find it again, never enough to use it."""
    return f"{secret[:4]}…({len(secret)} chars)"


def _text(data: bytes) -> str | None:
    if len(data) > MAX_SCANNED_BYTES or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")
