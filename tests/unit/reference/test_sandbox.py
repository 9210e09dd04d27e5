import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from sdlcflow.artifacts import ArtifactStore
from sdlcflow.identity import generate_key_pair, save_private_key
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


def _running_with(marker: str) -> list[int]:
    """Host pids of live processes whose command line holds `marker` (zombies count as gone).

    The sandbox gives commands their own PID namespace, so the pids they see are not ours."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


# a parent that starts a grandchild (both carrying the marker file's path in their command
# line), writes the marker once the grandchild runs, and then both sleep
_TREE = (
    "import subprocess, sys, time, pathlib\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', sys.argv[1]])\n"
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
            "PWD",  # bubblewrap names the working directory
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
        result = sandbox.run([PY, "-c", _TREE, str(pid_file)], cwd=tmp_path, timeout_s=10)
        assert result.timed_out and not result.ok
        assert result.duration_s < 30
        _assert_gone(pid_file)

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
        _assert_gone(pid_file)

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
        _assert_gone(pid_file)

    def test_missing_working_directory_is_reported(self, sandbox: Sandbox, tmp_path: Path) -> None:
        with pytest.raises(SandboxError, match="does not exist"):
            sandbox.run([PY, "-c", "pass"], cwd=tmp_path / "absent")


# tries to read each path given; prints what it could read, and every environment it can see
_SNOOP = (
    "import json, pathlib, sys\n"
    "read = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        read[name] = pathlib.Path(name).read_text(errors='replace')\n"
    "    except OSError as exc:\n"
    "        read[name] = None\n"
    "environs = []\n"
    "for entry in pathlib.Path('/proc').iterdir():\n"
    "    try:\n"
    "        environs.append((entry / 'environ').read_bytes().decode(errors='replace'))\n"
    "    except OSError:\n"
    "        pass\n"
    "print(json.dumps({'read': read, 'environs': environs}))\n"
)


class TestFilesystemIsolation:
    """A sandboxed command sees no file of the agent's besides its checkout: not its key, not
    its data, not other processes' environments; the system and Python still work."""

    def _snoop(self, sandbox: Sandbox, cwd: Path, *paths: str) -> dict[str, object]:
        result = sandbox.run([PY, "-c", _SNOOP, *paths], cwd=cwd)
        assert result.ok, result.stderr.decode()
        seen: dict[str, object] = json.loads(result.stdout)
        return seen

    def test_agent_key_file_and_data_outside_the_checkout_cannot_be_read(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        key_file = tmp_path / "agent" / "agent.key"
        key_file.parent.mkdir()
        save_private_key(generate_key_pair("agent-1"), key_file)
        checkout = tmp_path / "checkout"
        checkout.mkdir()
        (checkout / "setup.cfg").write_text("mine\n")
        seen = self._snoop(sandbox, checkout, str(key_file), "setup.cfg", "/etc/shadow")
        assert seen["read"] == {str(key_file): None, "setup.cfg": "mine\n", "/etc/shadow": None}
        assert "PRIVATE KEY" not in json.dumps(seen)

    def test_parent_environment_cannot_be_read_through_proc(
        self, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SDLCFLOW_AGENT_CREDENTIAL", "sdlc1.canary-credential")
        seen = self._snoop(sandbox, tmp_path, f"/proc/{os.getpid()}/environ")
        assert seen["read"] == {f"/proc/{os.getpid()}/environ": None}
        assert seen["environs"]  # the command's own processes are visible
        assert "canary-credential" not in json.dumps(seen)

    def test_command_writes_only_its_checkout_home_and_named_directories(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        checkout, reports, other = (tmp_path / n for n in ("checkout", "reports", "other"))
        for folder in (checkout, reports, other):
            folder.mkdir()
        script = (
            "import os, pathlib, sys\n"
            "for target in sys.argv[1:]:\n"
            "    try:\n"
            "        pathlib.Path(target).write_text('x')\n"
            "        print('wrote', target)\n"
            "    except OSError:\n"
            "        print('refused', target)\n"
        )
        targets = ["out.txt", f"{reports}/junit.xml", f"{other}/x", "/usr/x"]
        result = sandbox.run([PY, "-c", script, *targets], cwd=checkout, writable=[reports])
        assert result.stdout.decode().split("\n")[:4] == [
            "wrote out.txt",
            f"wrote {reports}/junit.xml",
            f"refused {other}/x",
            "refused /usr/x",
        ]
        assert (checkout / "out.txt").exists() and (reports / "junit.xml").exists()
        assert not (other / "x").exists()

    def test_missing_bubblewrap_is_a_clear_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
            Sandbox(ArtifactStore(tmp_path / "store"), scratch=tmp_path / "scratch")


def _assert_gone(marker: Path, timeout_s: float = 10.0) -> None:
    assert marker.exists(), "the command tree never started"
    deadline = time.monotonic() + timeout_s
    while survivors := _running_with(str(marker)):
        # the namespace's processes are reaped by the kernel shortly after the kill
        assert time.monotonic() < deadline, f"processes {survivors} survived the kill"
        time.sleep(0.01)
