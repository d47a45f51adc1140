"""Owner tokens of claims, and telling a dead owner on this host from a live one.

A token is `host:pid:random:machine.start`. `machine` names this kernel and
pid namespace (boot id + pid namespace), `start` the process's start time in
clock ticks since boot (`/proc/<pid>/stat`): together with the pid they name
one process, so a pid reused by a later process is not taken for the owner.

`owner_gone` answers True only when it is sure: the token was made on this
machine and pid namespace, and that process is no longer running (no such
pid, a zombie, or another process under that pid). Tokens from other hosts,
older token shapes and hosts without `/proc` give False: their leases run out
as before.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import uuid
from pathlib import Path


@functools.cache
def _machine() -> str:
    """This kernel (boot id) and pid namespace, hashed short; '' without /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}\0{namespace}".encode()).hexdigest()[:10]


def _process(pid: int) -> tuple[str, str] | None:
    """(state, start time) of process `pid` from /proc; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ("?", "")
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return (fields[0], fields[19]) if len(fields) > 19 else ("?", "")


def owner_token() -> str:
    """A token naming this worker process: host, pid, random part, machine and start marker."""
    pid = os.getpid()
    machine = _machine()
    found = _process(pid) if machine else None
    start = found[1] if found else ""
    return f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}:{machine}.{start}"


def owner_gone(owner: str | None) -> bool:
    """Whether the process that made `owner` is known dead (same host, pid gone or reused)."""
    if not owner:
        return False
    parts = owner.rsplit(":", 3)
    if len(parts) != 4:
        return False
    host, pid_text, _, marker = parts
    machine, _, start = marker.partition(".")
    if not machine or not start or machine != _machine() or host != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    found = _process(pid)
    if found is None:  # /proc may hide other users' processes (hidepid): ask the kernel too
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    state, started = found
    if state == "?":
        return False  # unreadable: not sure, so not dead
    return state in ("Z", "X") or started != start
