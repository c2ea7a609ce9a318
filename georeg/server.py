"""A warm georeg for the command line: ``georeg serve`` keeps one process with torch, kornia and
the networks loaded, and ``georeg register`` (and ``georeg demo``) hands its command to it
instead of importing them again (about 2 s of every fresh process on a 2-core CPU; a 256 px
pair's whole registration takes 0.5-0.9 s once they are loaded).

Each request runs in a child forked from the warm process: the child takes the caller's terminal
(its standard input, output and error, passed over the socket), working folder and environment,
runs the same command the CLI would run in-process, and reports the exit code. Ctrl-C or SIGTERM
in the caller reach the child, which cleans up as a fresh process does; a caller that goes away
stops its child the same way. A child's crash cannot take the server down.

The socket lives in a folder only its user can enter (``$XDG_RUNTIME_DIR/georeg`` or
``<tmp>/georeg-<uid>``; ``GEOREG_SERVER_SOCKET`` names another), and the server also checks the
caller's user id. A server that runs other code than the caller's installation (georeg upgraded
or edited since it started) refuses, and the caller runs in-process. ``GEOREG_SERVER=off`` makes
the CLI ignore a running server. Linux only (fork, Unix sockets and peer credentials).

Standard library only: the CLI imports this module before anything heavy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import GeoregError
from .interrupts import flush_standard_streams
from .interrupts import terminate as _terminate

log = logging.getLogger(__name__)

SOCKET_ENV = "GEOREG_SERVER_SOCKET"
SWITCH_ENV = "GEOREG_SERVER"  # "off" (or 0, no, false): the CLI never forwards
FORWARDED = ("register", "demo")  # commands handed to a running server
GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose", "-q", "--quiet", "--machine")
MAX_REQUEST = 8 << 20
CONNECT_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 120.0


class ServerError(GeoregError, OSError):
    """The georeg server could not start, or could not be reached for a request that needs it."""

    exit_code = 2


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def socket_path() -> Path:
    """Where the server listens: ``GEOREG_SERVER_SOCKET``, else a folder of the user's own."""
    given = os.environ.get(SOCKET_ENV)
    if given:
        return Path(given).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "georeg" / "server.sock"
    import tempfile

    return Path(tempfile.gettempdir()) / f"georeg-{os.getuid()}" / "server.sock"


def _private(folder: Path) -> bool:
    """True when ``folder`` is a real folder owned by this user that nobody else can enter."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def code_fingerprint() -> str:
    """A digest of the installed georeg (every file's name, size and modification time, and the
    Python environment): a server started before an upgrade or an edit refuses requests."""
    root = Path(__file__).resolve().parent
    # the environment, not the interpreter's name in it: .venv/bin/python and .venv/bin/python3
    # (the console script and the QGIS bridge's GEOREG_PYTHON) are the same installation
    h = hashlib.sha256(f"{os.path.realpath(sys.prefix)}|{sys.version}".encode())
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            st = os.stat(os.path.join(folder, name))
            h.update(f"{os.path.relpath(os.path.join(folder, name), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- messages


def _send(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    frame = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [frame], fds)
    else:
        sock.sendall(frame)


def _recv(sock: socket.socket, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None at end of stream) and the file descriptors that came with it."""
    fds: list[int] = []
    buf = b""
    while len(buf) < 4:
        if want_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, 65536, want_fds)
            fds.extend(got)
        else:
            chunk = sock.recv(65536)
        if not chunk:
            _close(fds)
            return None, []
        buf += chunk
    (size,) = struct.unpack("!I", buf[:4])
    if size > MAX_REQUEST:
        _close(fds)
        raise ServerError(f"a georeg server message of {size} bytes is larger than the {MAX_REQUEST} allowed")
    while len(buf) < 4 + size:
        chunk = sock.recv(min(65536, 4 + size - len(buf)))
        if not chunk:
            _close(fds)
            return None, []
        buf += chunk
    return json.loads(buf[4:4 + size]), fds


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _peer_uid(conn: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def _connect(path: Path, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    """A connection to the server at ``path``, or None when none listens there (or its folder is
    not private: a socket others could have placed is never used)."""
    if not _private(path.parent) or not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return sock


# ---------------------------------------------------------------- the client side


def forwardable(argv: list[str]) -> bool:
    """True for a command line a running server takes: ``register`` or ``demo`` after the global
    flags, without --help."""
    i = 0
    while i < len(argv) and argv[i] in GLOBAL_FLAGS:
        i += 1
    return i < len(argv) and argv[i] in FORWARDED and not {"-h", "--help"} & set(argv)


def _switched_off() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() in ("0", "off", "no", "false")


def forward(argv: list[str]) -> int | None:
    """Run ``georeg <argv>`` in a running server; its exit code, or None when no server takes it
    (none runs, it runs other code, it is switched off, the terminal's descriptors are closed):
    the caller then runs the command itself."""
    if not supported() or _switched_off() or not forwardable(argv):
        return None
    path = socket_path()
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return None
    sock = _connect(path)
    if sock is None:
        return None
    with sock:
        try:
            mask = os.umask(0o022)
            os.umask(mask)
            _send(sock, {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "umask": mask,
                         "code": code_fingerprint()}, [0, 1, 2])
            sock.settimeout(ANSWER_TIMEOUT_S)  # a server still warming up answers within seconds
            reply, _ = _recv(sock)
            sock.settimeout(None)
        except TimeoutError:
            sys.stderr.write(f"georeg: the server at {path} did not answer in {ANSWER_TIMEOUT_S:.0f} s; running "
                             "the command in this process\n")
            return None
        except (OSError, ValueError):
            return None
        if reply is None or "pid" not in reply:
            if reply and reply.get("refused"):
                sys.stderr.write(f"georeg: not using the server at {path}: {reply['refused']}\n")
            return None
        return _wait(sock, int(reply["pid"]))


def _wait(sock: socket.socket, pid: int) -> int:
    """The child's exit code; Ctrl-C, SIGTERM and SIGHUP here are passed on to it."""
    def relay(signum, frame):
        try:
            os.kill(pid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, relay)
    while True:
        try:
            reply, _ = _recv(sock)
            break
        except InterruptedError:
            continue
        except OSError:
            reply = None
            break
    if reply is None or "exit" not in reply:
        sys.stderr.write("Error: the georeg server's worker ended without a result (killed?); run the command "
                         "again, or with GEOREG_SERVER=off to run it in this process\n")
        return 1
    return int(reply["exit"])


def _ask(path: Path, message: dict) -> tuple[bool, dict | None]:
    """(whether a server listens at ``path``, its answer to ``message``: a status or stop request)."""
    sock = _connect(path)
    if sock is None:
        return False, None
    with sock:
        _send(sock, message)
        return True, _recv(sock)[0]


def status(path: Path | None = None) -> dict | None:
    """What the server at ``path`` reports of itself (pid, commands served and running, seconds
    up, idle limit, threads, whether it runs this installation's code), or None when none listens."""
    return _ask(path or socket_path(), {"status": True, "code": code_fingerprint()})[1]


def stop(path: Path | None = None) -> int:
    """Ask the server at ``path`` to stop; its process id. Running requests finish."""
    path = path or socket_path()
    listening, reply = _ask(path, {"stop": True})
    if not listening:
        raise ServerError(f"no georeg server listens at {path}; nothing to stop")
    if not reply or "stopped" not in reply:
        raise ServerError(f"the georeg server at {path} did not confirm that it stops: {reply}")
    return int(reply["stopped"])


READY_LINE = "georeg server ready at"  # what `georeg serve` prints once it listens


def start(log_file: str | Path, env: dict | None = None, idle_minutes: float = 30,
          timeout_s: float = 300.0):
    """Start ``georeg serve -v`` in the background (the environment ``env``, which may name its
    socket, else this process's), its messages in the file ``log_file``, and return its
    ``subprocess.Popen`` once it listens: for scripts and benchmarks that want a warm server for a
    while (``terminate()`` stops it, removing its socket). Raises :class:`ServerError` with the
    log's end when it exits or is not ready within ``timeout_s`` (imports and a warm-up
    registration take 3-5 s on a 2-core CPU)."""
    import subprocess

    log_path = Path(log_file)
    with open(log_path, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "georeg.cli", "serve", "-v", "--idle-minutes",
                                 f"{idle_minutes:g}"], stdout=f, stderr=f, env=env)
    t0 = time.monotonic()
    while READY_LINE not in log_path.read_text(errors="replace"):
        late = time.monotonic() - t0 > timeout_s
        if proc.poll() is not None or late:
            if late:
                proc.terminate()
                proc.wait(timeout=60)
            tail = log_path.read_text(errors="replace")[-800:].strip()
            what = f"was not ready after {timeout_s:.0f} s" if late else "exited"
            raise ServerError(f"georeg serve {what} (its log {log_path}): {tail}")
        time.sleep(0.1)
    return proc


# ---------------------------------------------------------------- the server side


class Server:
    """Listens at ``path``; ``run(argv) -> exit code`` runs one command line in a forked child."""

    def __init__(self, run: Callable[[list[str]], int], path: Path | None = None, idle_s: float = 1800.0,
                 threads: int | None = None):
        if not supported():
            raise ServerError(f"georeg serve needs Linux (fork, Unix sockets and peer credentials); this is "
                              f"{sys.platform}. Use 'georeg batch' to register many pairs in one process")
        self.run, self.path, self.idle_s, self.threads = run, Path(path or socket_path()), idle_s, threads
        self.code = code_fingerprint()
        self.children: set[int] = set()
        self.listener: socket.socket | None = None
        self._inode = -1
        self.served = 0
        self.started = time.time()

    def bind(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerError(f"cannot create the server's folder {folder} ({exc.strerror}); give another with "
                              f"--socket or {SOCKET_ENV}") from exc
        if not _private(folder):
            raise ServerError(f"the server's folder {folder} must belong to you and be closed to others "
                              f"(chmod 700); found otherwise. Fix it or give another with --socket")
        if self.path.exists() or self.path.is_symlink():
            sock = _connect(self.path, timeout=0.5)
            if sock is not None:
                sock.close()
                raise ServerError(f"a georeg server already listens at {self.path}; stop it with "
                                  "'georeg serve --stop' or give another --socket")
            try:
                self.path.unlink()  # left by a server that was killed
            except OSError as exc:
                raise ServerError(f"cannot remove {self.path}, left by an earlier server ({exc.strerror}); remove it "
                                  "or give another --socket") from exc
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(str(self.path))
        except OSError as exc:
            self.listener.close()
            self.listener = None
            raise ServerError(f"cannot listen at {self.path} ({exc.strerror or exc}); give a shorter path with "
                              "--socket (Unix sockets allow about 100 characters)") from exc
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        self.listener.listen(16)

    def serve_forever(self) -> None:
        """Accept requests until stopped, idle for ``idle_s`` with no child running, or interrupted."""
        import select

        last = time.monotonic()
        try:
            while True:
                self._reap()
                if self.idle_s and not self.children and time.monotonic() - last > self.idle_s:
                    log.info("no request for %.0f min; stopping", self.idle_s / 60)
                    return
                ready, _, _ = select.select([self.listener], [], [], 1.0)
                if not ready:
                    continue
                conn, _ = self.listener.accept()
                last = time.monotonic()
                if self._handle(conn) == "stop":
                    return
        finally:
            self.close()

    def close(self) -> None:
        if self.listener is not None:
            try:  # only the socket this server made: another server may have replaced it
                if os.stat(self.path).st_ino == self._inode:
                    self.path.unlink()
            except OSError:
                pass
            self.listener.close()
            self.listener = None

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)

    def _handle(self, conn: socket.socket) -> str | None:
        fds: list[int] = []
        try:
            uid = _peer_uid(conn)
            if uid is not None and uid != os.getuid():
                log.warning("refused a request from user id %d", uid)
                return None
            conn.settimeout(10.0)
            req, fds = _recv(conn, want_fds=3)
            conn.settimeout(None)
            if req is None:
                return None
            if req.get("status"):
                self._reap()
                _send(conn, {"pid": os.getpid(), "served": self.served, "running": len(self.children),
                             "up_s": round(time.time() - self.started, 1), "idle_s": self.idle_s,
                             "threads": self.threads, "current": req.get("code") == self.code})
                return None
            if req.get("stop"):
                _send(conn, {"stopped": os.getpid()})
                log.info("stopping on request")
                return "stop"
            if req.get("code") != self.code:
                _send(conn, {"refused": "it runs another version of georeg than this one (upgraded or edited "
                                        "since it started); stop it with 'georeg serve --stop' and start it again"})
                return None
            if len(fds) != 3 or not isinstance(req.get("argv"), list):
                _send(conn, {"refused": "the request did not carry a command line and the terminal's three "
                                        "descriptors"})
                return None
            pid = os.fork()
            if pid == 0:
                self._child(conn, req, fds)  # never returns
            self.children.add(pid)
            self.served += 1
            log.info("request %d: georeg %s (pid %d)", self.served, " ".join(req["argv"][:1]), pid)
        except (OSError, ValueError) as exc:
            log.warning("a request failed before it ran: %s", exc)
        finally:
            _close(fds)
            conn.close()
        return None

    def _child(self, conn: socket.socket, req: dict, fds: list[int]) -> None:
        code = 1
        try:
            self.listener.close()
            os.setsid()  # the server's terminal (its Ctrl-C, its hang-up) no longer reaches this command
            for sig in (signal.SIGCHLD, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            for sig in (signal.SIGINT, signal.SIGTERM):  # as the console script handles them
                signal.signal(sig, _terminate)
            _take_over(req, fds)
            if self.threads:  # the registration's default (`--threads`), unless the caller's environment sets one
                os.environ.setdefault("GEOREG_THREADS", str(self.threads))
            try:
                _send(conn, {"pid": os.getpid()})
            except OSError:  # the caller left before this child started (it runs the command itself)
                os._exit(1)
            import threading

            threading.Thread(target=_watch_caller, args=(conn,), daemon=True).start()
            code = self.run(req["argv"])
        except KeyboardInterrupt:
            code = 130
        except BaseException as exc:  # noqa: BLE001 - a child must always report and exit
            code = 1
            try:
                sys.stderr.write(f"Error: internal error in the georeg server ({type(exc).__name__}: {exc}); run "
                                 "the command again with GEOREG_SERVER=off and report it\n")
            except OSError:
                pass
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # done: the caller leaving must not interrupt the exit
                signal.signal(sig, signal.SIG_IGN)
            flush_standard_streams()
            try:
                _send(conn, {"exit": int(code)})
            except OSError:
                pass
            os._exit(int(code) & 0xFF)


def _take_over(req: dict, fds: list[int]) -> None:
    """In a child: become the caller's command: its terminal (the three descriptors ``fds``),
    folder, environment, umask and arguments."""
    import fcntl
    import tempfile

    # above 2 first: a descriptor received as 0-2 (the server started with a stream closed)
    # would otherwise be overwritten before it is moved into place
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in fds]
    _close([fd for fd in fds if fd > 2])
    for target, fd in zip((0, 1, 2), high):
        os.dup2(fd, target)
    _close(high)
    _reopen_standard_streams()
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    os.umask(int(req.get("umask", 0o022)))  # the outputs get the caller's permissions
    sys.argv = ["georeg", *req["argv"]]
    tempfile.tempdir = None  # the caller's TMPDIR, not the one the server's warm-up cached
    for h in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(h)


def _watch_caller(conn: socket.socket) -> None:
    """In a child: when the caller goes away (killed, its terminal closed), stop as on Ctrl-C."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _reopen_standard_streams() -> None:
    """sys.stdin/stdout/stderr over the caller's descriptors, buffered as a fresh process would
    buffer them (line by line on a terminal)."""
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    sys.stdin = open(0, encoding=enc, closefd=False)  # noqa: SIM115 - the process's own streams
    sys.stdout = open(1, "w", encoding=enc, closefd=False, buffering=1 if os.isatty(1) else -1)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding=enc, errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
