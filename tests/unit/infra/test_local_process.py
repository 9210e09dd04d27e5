"""Recognising our own server processes and reading their logs, without starting servers."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from sdlcflow.infra.process import (
    home_marker,
    is_our_server,
    launch,
    log_tail,
    port_open,
    read_pid,
    terminate,
)


class TestProcesses:
    """A pid counts as our server only if it lives and carries that server's home marker."""

    def test_a_live_process_without_the_marker_is_not_our_server(self, tmp_path: Path) -> None:
        assert not is_our_server(os.getpid(), tmp_path)
        assert not is_our_server(None, tmp_path)

    def test_a_launched_process_is_ours_until_it_is_terminated(self, tmp_path: Path) -> None:
        script = "import sys, time\nprint('started', flush=True)\ntime.sleep(60)"
        command = [sys.executable, "-c", script, home_marker(tmp_path)]
        log = tmp_path / "server.log"

        pid = launch(command, env=dict(os.environ), cwd=tmp_path, log_path=log)
        assert is_our_server(pid, tmp_path)

        terminate(pid, timeout_s=10)
        assert not is_our_server(pid, tmp_path)

    def test_a_pid_file_with_garbage_reads_as_no_pid(self, tmp_path: Path) -> None:
        (tmp_path / "x.pid").write_text("not a pid\n")

        assert read_pid(tmp_path / "x.pid") is None
        assert read_pid(tmp_path / "missing.pid") is None


class TestPortsAndLogs:
    """Ports are probed by connecting; a log's tail is its last lines."""

    def test_a_listening_port_is_open_and_a_closed_one_is_not(self) -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            port = server.getsockname()[1]
            assert port_open("127.0.0.1", port)
        assert not port_open("127.0.0.1", port)

    def test_the_tail_is_the_last_lines_and_a_missing_log_says_so(self, tmp_path: Path) -> None:
        log = tmp_path / "server.log"
        log.write_text("".join(f"line {n}\n" for n in range(100)))

        assert log_tail(log, lines=3) == "line 97\nline 98\nline 99"
        assert log_tail(tmp_path / "none.log") == "(no log written)"
