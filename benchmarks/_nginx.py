"""Start a throw-away nginx on 127.0.0.1 that serves a directory with WebDAV PUT.

Benchmarks use it as the yardstick for our data server. Everything nginx writes (config, pid
file, error log, request-body temp files) lives in one temporary directory, and the process is
stopped when the context manager exits.

    with NginxWebDAV(root) as nginx:
        requests.put(nginx.url + "a/b.dat", data=b"...")
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Where Debian's package puts the binary when /usr/sbin is not on PATH (e.g. non-root users).
_FALLBACK_BINARIES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

_CONFIG_TEMPLATE = """\
{user_line}
worker_processes {workers};
daemon off;
master_process on;
pid "{tmp}/nginx.pid";
error_log "{tmp}/error.log" warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path "{body_tmp}";
    proxy_temp_path "{tmp}/proxy";
    fastcgi_temp_path "{tmp}/fastcgi";
    uwsgi_temp_path "{tmp}/uwsgi";
    scgi_temp_path "{tmp}/scgi";

    server {{
        listen 127.0.0.1:{port};
        root "{root}";
        location / {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
            autoindex on;
            autoindex_format json;
        }}
    }}
}}
"""


class NginxUnavailable(RuntimeError):
    """nginx is not installed, lacks the WebDAV module, or would not start."""


def find_nginx() -> str | None:
    """Return the path of an nginx binary, or None when there is none."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in _FALLBACK_BINARIES if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class NginxWebDAV:
    """An nginx process serving ``root`` at ``url`` with PUT and JSON autoindex.

    ``workers`` defaults to one worker process, which matches a single-process Python server
    driven by one client connection. The body temp directory is placed next to ``root`` when
    possible so that nginx's final rename of an upload stays on one file system.
    """

    def __init__(self, root: Path, workers: int = 1, start_timeout: float = 10.0) -> None:
        self.root = Path(root).resolve()
        self.workers = workers
        self.start_timeout = start_timeout
        self.binary = find_nginx()
        self.url = ""
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def pid(self) -> int:
        """Process id of the nginx master (its workers are its children)."""
        return self._proc.pid if self._proc is not None else 0

    def __enter__(self) -> "NginxWebDAV":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start nginx and wait until it accepts connections."""
        if self.binary is None:
            raise NginxUnavailable("nginx not found (Debian: apt-get install nginx)")
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-nginx-", dir=self.root.parent)
        tmp = Path(self._tmp.name)
        body_tmp = tmp / "body"
        body_tmp.mkdir()
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = _free_port()
            conf = tmp / "nginx.conf"
            is_root = hasattr(os, "geteuid") and os.geteuid() == 0
            conf.write_text(_CONFIG_TEMPLATE.format(
                user_line="user root;" if is_root else "",
                workers=self.workers, tmp=tmp.as_posix(), body_tmp=body_tmp.as_posix(),
                port=self.port, root=self.root.as_posix()))
            cmd = [self.binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE)
            if _wait_listening(self.port, self._proc, self.start_timeout):
                self.url = f"http://127.0.0.1:{self.port}/"
                return
            last_error = self._collect_failure(tmp)
        self.stop()
        raise NginxUnavailable(f"nginx did not start: {last_error}")

    def _collect_failure(self, tmp: Path) -> str:
        """Stop a failed start and return what nginx said about it."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.kill()
        _out, err = self._proc.communicate(timeout=5)
        log = tmp / "error.log"
        text = (err or b"").decode(errors="replace")
        if log.exists():
            text += log.read_text(errors="replace")
        self._proc = None
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else "no message"

    def stop(self) -> None:
        """Stop nginx (graceful quit, then kill) and remove its temporary directory."""
        if self._proc is not None and self._proc.poll() is None:
            # SIGQUIT is nginx's graceful shutdown; Windows has no signals, so terminate there.
            self._proc.send_signal(getattr(signal, "SIGQUIT", signal.SIGTERM))
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
