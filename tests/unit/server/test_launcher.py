"""Stopping a process group leaves no member behind (real processes, no server)."""

from __future__ import annotations

import signal
import subprocess
import sys

from satwatch.server.launcher import process_group_members, stop_process_group

# A leader that ignores SIGINT (like a hung server) with a child in its group.
STUBBORN = (
    "import signal, subprocess, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "subprocess.Popen(['sleep', '60']); time.sleep(60)"
)


def test_stop_kills_the_whole_group_after_the_timeout():
    leader = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=True)
    try:
        for _ in range(50):
            if len(process_group_members(leader.pid)) == 2:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert len(process_group_members(leader.pid)) == 2
        stop_process_group(leader.pid, timeout=0.5, process=leader)
        assert process_group_members(leader.pid) == []
        assert leader.returncode == -signal.SIGKILL
    finally:
        if leader.poll() is None:
            leader.kill()
