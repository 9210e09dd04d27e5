import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from sdlcflow.artifacts import ArtifactStore
from sdlcflow.sandbox import Sandbox, SandboxError, scrubbed_environment

PY = sys.executable


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(
        ArtifactStore(tmp_path / "store"), scratch=tmp_path / "scratch", default_timeout_s=30
    )


def _wait_for(path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting for its reaper counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# a parent that starts a grandchild, writes the grandchild's pid, and then both sleep
_TREE = (
    "import subprocess, sys, time, pathlib\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "pathlib.Path(sys.argv[1]).write_text(str(child.pid))\n"
    "time.sleep(60)\n"
)


class TestSandboxEnvironment:
    """Commands never see the parent's secrets; only allow-listed and explicit variables."""

    def test_parent_secrets_are_not_inherited(
        self, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in (
            "GITHUB_TOKEN",
            "DEPLOY_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "SDLCFLOW_AGENT_CREDENTIAL",
        ):
            monkeypatch.setenv(name, "leak-me")
        result = sandbox.run(
            [PY, "-c", "import os, json; print(json.dumps(dict(os.environ)))"], cwd=tmp_path
        )
        seen = json.loads(result.stdout)
        assert "leak-me" not in result.stdout.decode()
        assert set(seen) <= {
            "PATH",
            "LANG",
            "HOME",
            "TMPDIR",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONHASHSEED",
            "LC_CTYPE",
        }
        home = Path(seen["HOME"])
        assert home.parent == tmp_path / "scratch" and not home.exists()  # private, then removed

    def test_explicit_variables_are_passed_but_sdlcflow_credentials_are_refused(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        result = sandbox.run(
            [PY, "-c", "import os; print(os.environ['AUTH_SECRET'])"],
            cwd=tmp_path,
            extra_env={"AUTH_SECRET": "given"},
        )
        assert result.stdout == b"given\n"
        with pytest.raises(SandboxError, match="never enter the sandbox"):
            sandbox.run([PY, "-c", "pass"], cwd=tmp_path, extra_env={"SDLCFLOW_TOKEN": "x"})

    def test_scrubbed_environment_keeps_only_the_allow_list(self, tmp_path: Path) -> None:
        env = scrubbed_environment(tmp_path, parent={"PATH": "/bin", "LANG": "C", "API_TOKEN": "t"})
        assert env["PATH"] == "/bin" and "API_TOKEN" not in env


class TestSandboxRuns:
    """Output is captured as artifacts; timeouts and cancellation kill the whole process group."""

    def test_output_exit_code_and_duration_are_recorded_as_artifacts(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        result = sandbox.run(
            [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
            cwd=tmp_path,
        )
        assert (result.exit_code, result.timed_out, result.cancelled, result.ok) == (
            3,
            False,
            False,
            False,
        )
        assert sandbox.store.get(result.stdout_digest) == b"out\n"
        assert sandbox.store.get(result.stderr_digest) == b"err\n"
        assert result.duration_s > 0

    def test_timeout_kills_the_process_and_its_children(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        pid_file = tmp_path / "grandchild.pid"
        result = sandbox.run([PY, "-c", _TREE, str(pid_file)], cwd=tmp_path, timeout_s=1.5)
        assert result.timed_out and not result.ok
        assert result.duration_s < 30
        _assert_gone(int(pid_file.read_text()))

    def test_cancellation_kills_the_process_group(self, sandbox: Sandbox, tmp_path: Path) -> None:
        pid_file = tmp_path / "grandchild.pid"
        cancel = threading.Event()
        outcome: list[object] = []
        worker = threading.Thread(
            target=lambda: outcome.append(
                sandbox.run([PY, "-c", _TREE, str(pid_file)], cwd=tmp_path, cancel=cancel)
            )
        )
        worker.start()
        _wait_for(pid_file)
        cancel.set()
        worker.join(timeout=20)
        assert not worker.is_alive()
        (result,) = outcome
        assert result.cancelled and not result.timed_out  # type: ignore[attr-defined]
        _assert_gone(int(pid_file.read_text()))

    def test_asyncio_cancellation_kills_the_command(self, sandbox: Sandbox, tmp_path: Path) -> None:
        pid_file = tmp_path / "grandchild.pid"

        async def scenario() -> None:
            task = asyncio.ensure_future(
                sandbox.run_async([PY, "-c", _TREE, str(pid_file)], cwd=tmp_path)
            )
            while not pid_file.exists():
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(asyncio.wait_for(scenario(), timeout=30))
        _assert_gone(int(pid_file.read_text()))

    def test_missing_working_directory_is_reported(self, sandbox: Sandbox, tmp_path: Path) -> None:
        with pytest.raises(SandboxError, match="does not exist"):
            sandbox.run([PY, "-c", "pass"], cwd=tmp_path / "absent")


def _assert_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        # the grandchild was re-parented to init, which reaps it shortly after the kill
        assert time.monotonic() < deadline, f"process {pid} survived the kill"
        time.sleep(0.01)
