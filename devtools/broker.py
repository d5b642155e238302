"""Run a real mosquitto on a free loopback port from a temp dir (tests, benchmark, demo).

The config is `sync/mosquitto/dev.conf` plus the listener(s), paths, optional users/ACL/TLS, and `user root`
when running as root (mosquitto would otherwise switch to user `mosquitto` before opening the files); or the
production config itself (`prod_config`: sync/mosquitto/prod.conf with its paths and ports replaced).

    python -m devtools.broker run [--port 1883]     # a dev broker until Ctrl-C
    python -m devtools.broker acl                   # the production pattern ACL (sync/mosquitto/acl)
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEV_CONF = Path(__file__).resolve().parents[1] / "sync" / "mosquitto" / "dev.conf"  # shipped broker configs
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOSQUITTO_DIR = DEV_CONF.parent
PROD_CONF = MOSQUITTO_DIR / "prod.conf"
ACL_FILE = MOSQUITTO_DIR / "acl"  # pattern ACL: every device's rules derive from its identity


def device_username(store: str, device: str) -> str:
    """A device's identity: certificate CN = MQTT username = client id on the production broker."""
    return f"{store}/{device}"


def prod_acl() -> str:
    """The production ACL (devices by pattern, `cloud` and `fleet-admin` users)."""
    return ACL_FILE.read_text()


def prod_config(pki_dir: str | Path, workdir: str | Path, device_port: int, service_port: int) -> str:
    """sync/mosquitto/prod.conf as shipped, with /etc/mosquitto/storefront/ -> pki_dir (ca.crt, services-ca.crt,
    server.{crt,key}, acl), persistence and log in workdir, and both listeners on loopback ports."""
    pki, work = Path(pki_dir).resolve(), Path(workdir).resolve()
    conf = PROD_CONF.read_text()
    for old, new in (("/etc/mosquitto/storefront/", f"{pki}/"), ("/var/lib/mosquitto/", f"{work}/"),
                     ("log_dest syslog", f"log_dest file {work / 'mosquitto.log'}\nlog_type information"),
                     ("listener 8883\n", f"listener {device_port} 127.0.0.1\n"),
                     ("listener 8884\n", f"listener {service_port} 127.0.0.1\n")):
        if old not in conf:
            raise ValueError(f"{PROD_CONF}: {old!r} not found (keep prod_config in step with it)")
        conf = conf.replace(old, new)
    if os.geteuid() == 0:
        conf += "\nuser root\n"
    return conf


@dataclass
class TlsListener:
    ca_file: str
    cert_file: str
    key_file: str
    port: int = 0  # 0 = pick a free one
    require_certificate: bool = True


class Broker:
    """A mosquitto process. `stop()` is SIGTERM (saves its DB), `kill()` is SIGKILL; `start()` again reuses
    the port and the persistence directory, so a restart keeps sessions that were saved."""

    def __init__(self, workdir: str | Path | None = None, *, port: int = 0, users: dict[str, str] | None = None,
                 acl: str | None = None, tls: TlsListener | None = None, extra: str = "",
                 bind_clientid: bool = False, config: str | None = None, ports: list[int] | None = None) -> None:
        """config: a whole mosquitto config to run instead of dev.conf + options (ports: the ports it opens).
        bind_clientid: `use_username_as_clientid` on the listeners (a username can only open its own session)."""
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="sf-mosquitto-")
        self.dir = Path(workdir or self._tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        if tls is not None and not tls.port:
            tls.port = free_port()
        self.users, self.acl, self.extra = users, acl, extra
        self.bind_clientid, self.config = bind_clientid, config
        self.ports = list(ports) if ports else [self.port] + ([tls.port] if tls else [])
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"

    @property
    def tls_port(self) -> int | None:
        return self.tls.port if self.tls else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_config(self) -> Path:
        if self.config is not None:
            self.conf_path.write_text(self.config)
            return self.conf_path
        conf = DEV_CONF.read_text()
        lines = [conf, f"persistence_location {self.dir}/", f"log_dest file {self.log_path}"]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.users is not None:
            conf_lines = lines[0].replace("allow_anonymous true", "allow_anonymous false")
            lines[0] = conf_lines
            pw = self.dir / "passwd"
            pw.write_text("")
            for name, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), name, password], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        if self.acl is not None:
            (self.dir / "acl").write_text(self.acl)
            lines.append(f"acl_file {self.dir / 'acl'}")
        lines.append(self.extra)
        bind = ["use_username_as_clientid true"] if self.bind_clientid else []
        lines += [f"listener {self.port} 127.0.0.1"] + bind  # listener options go below their listener
        if self.tls is not None:
            t = self.tls
            lines += [f"listener {t.port} 127.0.0.1", f"cafile {t.ca_file}", f"certfile {t.cert_file}",
                      f"keyfile {t.key_file}", f"require_certificate {'true' if t.require_certificate else 'false'}",
                      "use_identity_as_username true", "tls_version tlsv1.2"] + bind
        self.conf_path.write_text("\n".join(lines) + "\n")
        return self.conf_path

    def start(self, timeout: float = 10.0) -> "Broker":
        if self.running:
            return self
        self.write_config()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}\n{tail}")
            if all(_port_open(p) for p in self.ports):
                log.info("mosquitto pid %d on 127.0.0.1:%d", self.proc.pid, self.port)
                return self
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"mosquitto did not open port {self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: mosquitto saves its database and exits."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash; whatever was not in the last autosave is gone."""
        self._signal(signal.SIGKILL, 5.0)

    def _signal(self, sig: int, timeout: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def close(self) -> None:
        """Stop and remove the temp dir (if this object made it)."""
        self.kill()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m devtools.broker", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a dev broker until Ctrl-C")
    r.add_argument("--port", type=int, default=1883)
    r.add_argument("--dir", help="persistence dir (default: a temp dir)")
    sub.add_parser("acl", help="print the production pattern ACL (the same for every device)")
    args = p.parse_args(argv)
    if args.cmd == "acl":
        print(prod_acl(), end="")
        return 0
    logging.basicConfig(level=logging.INFO)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill PID` stops mosquitto too
    with Broker(args.dir, port=args.port) as b:
        print(f"mosquitto on 127.0.0.1:{b.port} (dir {b.dir}); Ctrl-C to stop", flush=True)
        try:
            while b.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
