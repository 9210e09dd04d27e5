"""A small login service to seed demo and test repositories with.

It has what the motivating incident needs: an auth library pinned in requirements.txt and a
lockfile, code that reads its secret from an environment variable, per-environment config files
under `deploy/`, a migration with a declared rollback, unit tests, and a smoke check
(`python -m service.smoke`) that logs a user in. An adapter only supports auth library 2.x, so a
major bump passes the unit tests and fails the smoke check, as in the incident. The files live
here as text (not as a directory of .py files) so our own pytest and ruff never pick them up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.gitops._git import GitError, GitIdentity
from sdlcflow.gitops._repo import PushStatus, commit_change, create_remote

#: 2024-01-01T00:00:00Z, the seed commit's time: fixed so every seeded repo has the same SHA.
SAMPLE_EPOCH = 1_704_067_200
SAMPLE_IDENTITY = GitIdentity("sdlcflow sample", "sample@sdlcflow.invalid")
SAMPLE_AUTH_PACKAGE = "pyjwt"
SAMPLE_AUTH_VERSION = "2.8.0"
SAMPLE_SECRET_VARIABLE = "AUTH_SECRET"

SAMPLE_FILES: Mapping[str, str] = {
    "README.md": """\
# login-service

A tiny login service used by sdlcflow's demo. `python -m service.smoke` logs a user in with the
configuration of the environment it runs in.
""",
    "ruff.toml": """\
line-length = 100
target-version = "py311"

[lint]
select = ["E", "F", "W", "I", "B"]
""",
    "pytest.ini": """\
[pytest]
testpaths = tests
pythonpath = .
""",
    "requirements.txt": """\
# Runtime dependencies; exact versions of everything are in requirements.lock.
pyjwt==2.8.0
""",
    "requirements.lock": """\
# Lockfile: every runtime dependency at an exact version.
cryptography==42.0.5
    # via pyjwt
pyjwt==2.8.0
    # via -r requirements.txt
""",
    "deploy/staging.env": """\
AUTH_SECRET=staging-signing-secret
TOKEN_TTL_SECONDS=3600
""",
    "deploy/prod.env": """\
AUTH_SECRET=prod-signing-secret
TOKEN_TTL_SECONDS=900
""",
    "migrations/0001_create_users.up.sql": """\
CREATE TABLE users (name TEXT PRIMARY KEY, password_sha256 TEXT NOT NULL);
""",
    "migrations/0001_create_users.down.sql": """\
DROP TABLE users;
""",
    "service/__init__.py": '''\
"""A tiny login service: checks passwords and issues signed session tokens."""
''',
    "service/config.py": '''\
"""Settings read from the environment at start-up, so each deploy slot gets its own."""

import os
from dataclasses import dataclass


class ConfigError(Exception):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Config:
    auth_secret: str
    token_ttl_seconds: int


def load() -> Config:
    """Read the service's settings; fail loudly when the signing secret is absent."""
    secret = os.environ.get("AUTH_SECRET", "")
    if not secret:
        raise ConfigError("AUTH_SECRET is not set: tokens cannot be signed")
    ttl = int(os.environ.get("TOKEN_TTL_SECONDS", "3600"))
    return Config(auth_secret=secret, token_ttl_seconds=ttl)
''',
    "service/compat.py": '''\
"""Adapter for the auth library: only the major versions it was written against are safe."""

from pathlib import Path

SUPPORTED_MAJOR_VERSIONS = (2,)
LOCKFILE = Path(__file__).resolve().parent.parent / "requirements.lock"


class IncompatibleAuthLibrary(Exception):
    """The locked auth library has an API this adapter does not speak."""


def locked_version(package: str = "pyjwt") -> str:
    for line in LOCKFILE.read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if name.lower() == package:
            return version
    raise IncompatibleAuthLibrary(f"{package} is not in {LOCKFILE.name}")


def check_auth_library() -> str:
    version = locked_version()
    if int(version.split(".")[0]) not in SUPPORTED_MAJOR_VERSIONS:
        raise IncompatibleAuthLibrary(f"pyjwt {version} is not supported by this adapter")
    return version
''',
    "service/auth.py": '''\
"""Password check and HMAC-signed session tokens (stdlib only, so tests need no install)."""

import hashlib
import hmac

USERS = {
    "alice": hashlib.sha256(b"wonderland").hexdigest(),
    "smoke": hashlib.sha256(b"smoke-password").hexdigest(),
}


class AuthError(Exception):
    """Wrong credentials or a token that does not verify."""


def login(user: str, password: str, secret: str) -> str:
    expected = USERS.get(user)
    given = hashlib.sha256(password.encode()).hexdigest()
    if expected is None or not hmac.compare_digest(expected, given):
        raise AuthError(f"login refused for {user!r}")
    return f"{user}.{_sign(user, secret)}"


def verify(token: str, secret: str) -> str:
    user, _, signature = token.rpartition(".")
    if not user or not hmac.compare_digest(signature, _sign(user, secret)):
        raise AuthError("token signature does not verify")
    return user


def _sign(user: str, secret: str) -> str:
    return hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()
''',
    "service/smoke.py": '''\
"""Smoke check the deploy agent runs in a staged slot: can a user log in?"""

import sys

from service import auth, compat, config


def main() -> int:
    try:
        version = compat.check_auth_library()
        settings = config.load()
        token = auth.login("smoke", "smoke-password", settings.auth_secret)
        auth.verify(token, settings.auth_secret)
    except Exception as exc:  # any failure means the release must not serve traffic
        print(f"smoke FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"smoke ok: login works (pyjwt {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
''',
    "tests/test_auth.py": """\
import pytest

from service import auth


def test_login_issues_a_token_that_verifies() -> None:
    token = auth.login("alice", "wonderland", "s3cret")
    assert auth.verify(token, "s3cret") == "alice"


def test_wrong_password_is_refused() -> None:
    with pytest.raises(auth.AuthError):
        auth.login("alice", "guess", "s3cret")


def test_token_signed_with_another_secret_is_refused() -> None:
    token = auth.login("alice", "wonderland", "s3cret")
    with pytest.raises(auth.AuthError):
        auth.verify(token, "other")
""",
    "tests/test_config.py": """\
import pytest

from service import config


def test_secret_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_SECRET", "from-env")
    assert config.load().auth_secret == "from-env"


def test_missing_secret_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_SECRET", raising=False)
    with pytest.raises(config.ConfigError):
        config.load()
""",
}


def write_sample_service(dest: Path, files: Mapping[str, str] = SAMPLE_FILES) -> Path:
    """Write the sample service's files under `dest` and return it."""
    for relative, text in files.items():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return dest


def create_sample_remote(
    remote: Path,
    *,
    scratch: Path,
    identity: GitIdentity = SAMPLE_IDENTITY,
    when: int = SAMPLE_EPOCH,
    files: Mapping[str, str] = SAMPLE_FILES,
) -> str:
    """A bare repository at `remote` seeded with the sample service on `main`; returns its SHA."""
    template = write_sample_service(scratch / "sample-service-template", files)
    return create_remote(template, remote, identity=identity, when=when)


@dataclass(frozen=True)
class SampleRepo:
    """A seeded sample remote plus a helper to commit edits onto it (for tests and the demo)."""

    remote: Path
    main: str
    scratch: Path
    identity: GitIdentity = SAMPLE_IDENTITY

    @classmethod
    def create(cls, root: Path) -> SampleRepo:
        """Seed `root/remote.git` with the sample service; scratch space in `root/scratch`."""
        scratch = root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        main = create_sample_remote(root / "remote.git", scratch=scratch)
        return cls(remote=root / "remote.git", main=main, scratch=scratch)

    def commit(
        self,
        base: str,
        branch: str,
        edits: Mapping[str, bytes | None],
        *,
        expected: str | None = None,
        when: int = SAMPLE_EPOCH + 3600,
    ) -> str:
        """Commit `edits` (path -> bytes, None deletes) on `base` as `branch`; return the SHA."""
        outcome = commit_change(
            self.remote,
            base,
            branch,
            edits,
            message=f"Edit {', '.join(sorted(edits))}",
            identity=self.identity,
            when=when,
            expected=expected,
            scratch=self.scratch,
        )
        if outcome.push is PushStatus.STALE:
            raise GitError(f"{branch} moved while committing {sorted(edits)}; pass expected=")
        return outcome.sha
