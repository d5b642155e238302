"""A test double of systemd's side of a `Type=notify` service with `WatchdogSec=` and `Restart=on-failure`, for
machines without a systemd (this one: PID 1 is not systemd, `systemctl --user` has no bus).

`NotifySocket` is a real AF_UNIX datagram socket (a path, or an abstract name given as `@name`) that records each
datagram and checks it against the sd_notify protocol: newline-separated `KEY=VALUE` assignments, keys of upper-case
letters, digits and `_`. `ServiceManager` runs a command the way systemd runs the unit: NOTIFY_SOCKET,
WATCHDOG_USEC and WATCHDOG_PID in its environment; start-up done at `READY=1` (else killed after
`start_timeout_s`); from then on a `WATCHDOG=1` at least every `watchdog_s`, else SIGABRT (systemd's default
WatchdogSignal) and, like `Restart=on-failure`, a new start; a non-zero exit restarts it too.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=.*$")


class NotifySocket:
    """Receives sd_notify datagrams: `messages` = [(monotonic time, sender pid or None, {key: value})]."""

    def __init__(self, folder: Path | None = None, abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"storefront-test-{uuid.uuid4().hex[:12]}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = Path(folder) / "notify.sock"
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # sender pid, as systemd checks it
        self.messages: list[tuple[float, int | None, dict[str, str]]] = []
        self.protocol_errors: list[str] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        self.sock.settimeout(0.2)
        while not self._closed:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(payload[:4], "little")
            fields: dict[str, str] = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if not ASSIGNMENT.match(line):
                    self.protocol_errors.append(repr(line))
                    continue
                k, v = line.split("=", 1)
                fields[k] = v
            with self._cv:
                self.messages.append((time.monotonic(), pid, fields))
                self._cv.notify_all()

    def times(self, key: str, value: str | None = None, pid: int | None = None, since: float = 0.0) -> list[float]:
        with self._cv:
            return [t for t, p, f in self.messages if key in f and (value is None or f[key] == value)
                    and (pid is None or p == pid) and t >= since]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0, pid: int | None = None,
                 since: float = 0.0) -> float | None:
        """Monotonic arrival time of the first matching message (None on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                hits = [t for t, p, f in self.messages if key in f and (value is None or f[key] == value)
                        and (pid is None or p == pid) and t >= since]
                if hits:
                    return hits[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)

    def values(self, key: str) -> list[str]:
        with self._cv:
            return [f[key] for _, _, f in self.messages if key in f]

    def close(self) -> None:
        self._closed = True
        self.sock.close()


@dataclass
class Start:
    """One start of the service."""

    pid: int
    started: float
    ready: float | None = None
    killed_by_watchdog: float | None = None
    exit_status: int | None = None
    output: list[str] = field(default_factory=list)


class ServiceManager:
    """Runs `argv` like systemd runs a Type=notify unit with WatchdogSec=watchdog_s and Restart=on-failure."""

    def __init__(self, argv: list[str], notify: NotifySocket, *, watchdog_s: float, start_timeout_s: float = 120.0,
                 restart_s: float = 0.2, max_starts: int = 3, env: dict | None = None, cwd: str | None = None):
        self.argv, self.notify, self.watchdog_s = argv, notify, watchdog_s
        self.start_timeout_s, self.restart_s, self.max_starts = start_timeout_s, restart_s, max_starts
        self.env, self.cwd = env or dict(os.environ), cwd
        self.starts: list[Start] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceManager:
        self._thread.start()
        return self

    def _spawn(self) -> Start:
        env = {**self.env, "NOTIFY_SOCKET": self.notify.env_value, "WATCHDOG_USEC": str(int(self.watchdog_s * 1e6))}
        # WATCHDOG_PID names the service's main process: the shell's pid, which exec hands to the command
        self.proc = subprocess.Popen(["/bin/sh", "-c", 'export WATCHDOG_PID=$$; exec "$@"', "sh", *self.argv], env=env,
                                     cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        st = Start(self.proc.pid, time.monotonic())
        threading.Thread(target=self._drain, args=(self.proc, st), daemon=True).start()
        self.starts.append(st)
        return st

    @staticmethod
    def _drain(proc: subprocess.Popen, st: Start) -> None:
        for line in proc.stdout:
            st.output.append(line.rstrip())

    def _supervise(self) -> None:
        while not self._stop.is_set() and len(self.starts) < self.max_starts:
            st = self._spawn()
            proc = self.proc
            while not self._stop.is_set() and proc.poll() is None:
                now = time.monotonic()
                if st.ready is None:
                    st.ready = self.notify.wait_for("READY", "1", timeout=0.05, pid=st.pid, since=st.started)
                    if st.ready is None and now - st.started > self.start_timeout_s:
                        proc.kill()  # TimeoutStartSec
                    continue
                pings = self.notify.times("WATCHDOG", "1", pid=st.pid, since=st.ready)
                last = max([st.ready] + pings)
                if now - last > self.watchdog_s:
                    st.killed_by_watchdog = now
                    proc.send_signal(signal.SIGABRT)  # WatchdogSignal=SIGABRT (the default)
                    proc.wait(30)
                    break
                time.sleep(0.05)
            if self._stop.is_set():
                return
            st.exit_status = proc.wait()
            if st.exit_status == 0 and st.killed_by_watchdog is None:
                return  # Restart=on-failure: a clean exit stays stopped
            time.sleep(self.restart_s)

    def stop(self, timeout: float = 60.0) -> int | None:
        """systemctl stop: SIGTERM to the running process, wait for it."""
        self._stop.set()
        proc = self.proc
        code = None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        elif proc is not None:
            code = proc.returncode
        if self.starts and self.starts[-1].exit_status is None:
            self.starts[-1].exit_status = code
        self._thread.join(5)
        return code
