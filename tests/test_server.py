"""``georeg serve``: 'georeg register' handed to a warm server gives the outputs, messages and
exit codes of a command run in its own process, and never uses a server it should not."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from georeg import server

pytestmark = pytest.mark.skipif(not server.supported(), reason="georeg serve needs Linux")

GEOREG = [sys.executable, "-m", "georeg.cli"]


@pytest.fixture(scope="module")
def pair(small_pair):
    return small_pair("scene_b.tif")


@pytest.fixture(scope="module")
def running():
    """A server on a socket of its own (a private folder under /tmp: socket paths are short);
    yields (socket path, its log file)."""
    from helpers import georeg_server

    folder = Path(tempfile.mkdtemp(prefix="georeg-test-"))
    path, log = folder / "s.sock", folder / "serve.log"
    try:
        with georeg_server({**os.environ, server.SOCKET_ENV: str(path)}, log):
            yield path, log
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _env(path: Path, **extra) -> dict:
    return {**os.environ, server.SOCKET_ENV: str(path), server.SWITCH_ENV: "on", **extra}


def _register(pair, out: Path, env: dict, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([*GEOREG, "register", str(pair[0]), str(pair[1]), "-o", str(out), "--matcher", "baseline",
                           *extra], capture_output=True, text=True, env=env, timeout=300)


def _requests(log: Path) -> int:
    return log.read_text().count("request ")


@pytest.mark.parametrize("argv, expected", [
    (["register", "a.tif", "b.tif", "-o", "c.tif"], True),
    (["-q", "--machine", "register", "a", "b", "-o", "c"], True),
    (["register", "--help"], False),
    (["demo", "out"], True),
    (["batch", "m.csv", "-o", "out"], False),
    (["serve"], False),
    ([], False),
])
def test_only_register_is_forwarded(argv, expected):
    assert server.forwardable(argv) is expected


def test_a_forwarded_register_matches_a_run_in_its_own_process(running, pair, tmp_path):
    path, log = running
    before = _requests(log)
    served = _register(pair, tmp_path / "served.tif", _env(path))
    own = _register(pair, tmp_path / "own.tif", _env(path, GEOREG_SERVER="off"))
    assert served.returncode == own.returncode == 0, (served.stderr, own.stderr)
    assert _requests(log) == before + 1  # the first went to the server, the second did not
    a, b = (json.loads((tmp_path / f"{n}_report.json").read_text()) for n in ("served", "own"))
    assert a["shift"] == b["shift"] and a["counts"] == b["counts"] and a["quality"] == b["quality"]
    assert a["cpu_threads"] == b["cpu_threads"] == 1  # one torch thread, served or not
    assert sorted(p.name.replace("served", "X") for p in tmp_path.glob("served*")) == \
        sorted(p.name.replace("own", "X") for p in tmp_path.glob("own*"))
    # the same summary on the caller's terminal, relative paths resolved in the caller's folder
    assert served.stdout.replace("served", "X").split("; ")[0] == own.stdout.replace("own", "X").split("; ")[0]
    # and the caller's umask (0o077 here) gives the outputs their permissions
    rel = subprocess.run([*GEOREG, "register", str(pair[0]), str(pair[1]), "-o", "rel.tif", "--matcher", "baseline",
                          "-q"], capture_output=True, text=True, env=_env(path), cwd=tmp_path, timeout=300,
                         preexec_fn=lambda: os.umask(0o077))
    assert rel.returncode == 0 and (tmp_path / "rel.tif").exists() and _requests(log) == before + 2, rel.stderr
    assert (tmp_path / "rel.tif").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "served.tif").stat().st_mode == (tmp_path / "own.tif").stat().st_mode
    # the caller's GEOREG_THREADS reaches the served command
    two = _register(pair, tmp_path / "two.tif", _env(path, GEOREG_THREADS="2"), "-q")
    assert two.returncode == 0 and _requests(log) == before + 3, two.stderr
    assert json.loads((tmp_path / "two_report.json").read_text())["cpu_threads"] == 2


def test_errors_and_exit_codes_reach_the_caller(running, pair, tmp_path):
    path, log = running
    before = _requests(log)
    r = _register((tmp_path / "missing.tif", pair[1]), tmp_path / "out.tif", _env(path))
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and "missing.tif" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.glob("out*"))
    r = _register(pair, tmp_path / "out.tif", _env(path), "--model", "nonsense")
    assert r.returncode == 2 and "nonsense" in r.stderr, r.stderr
    assert _requests(log) == before + 2


def test_ctrl_c_reaches_the_servers_child_and_leaves_nothing(running, small_pair, tmp_path):
    from helpers import sigint_as_in_a_terminal

    path, _ = running
    ref, tgt = small_pair("scene_b.tif", size=1024, seed=3)
    p = subprocess.Popen([*GEOREG, "register", str(ref), str(tgt), "-o", str(tmp_path / "out.tif")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(path),
                         preexec_fn=sigint_as_in_a_terminal)
    for line in p.stderr:  # progress lines: the child has started matching
        if "matching tile" in line:
            p.send_signal(signal.SIGINT)
            break
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the registration finished before it could be interrupted")
    assert p.returncode == 130 and "Interrupted" in err and "Traceback" not in err, (p.returncode, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # Ctrl-C's test covers the relay in the default run
def test_a_caller_that_dies_stops_its_child(running, small_pair, tmp_path):
    path, log = running
    ref, tgt = small_pair("scene_b.tif", size=1024, seed=3)
    p = subprocess.Popen([*GEOREG, "register", str(ref), str(tgt), "-o", str(tmp_path / "out.tif")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(path))
    for line in p.stderr:
        if "matching tile" in line:
            p.kill()  # SIGKILL: the caller cannot pass anything on
            break
    p.wait(timeout=60)
    t0 = time.time()
    while list(tmp_path.iterdir()) and time.time() - t0 < 60:
        time.sleep(0.2)
    assert list(tmp_path.iterdir()) == []  # the child stopped and cleaned up (or never wrote)
    time.sleep(2)
    assert list(tmp_path.iterdir()) == []  # and did not finish the run later


def test_a_server_running_other_code_is_refused_and_the_command_runs_here(running, pair, tmp_path):
    path, log = running
    sock = server._connect(path)
    with sock:
        server._send(sock, {"argv": ["register"], "cwd": "/", "env": {}, "code": "another"}, [0, 1, 2])
        reply, _ = server._recv(sock)
    assert "another version of georeg" in reply["refused"]


def test_no_server_or_a_stale_socket_runs_the_command_here(pair, tmp_path):
    """Nothing listens (no socket, then a socket file left by a killed server): the command runs
    in its own process, as if no server had ever run (a missing input: its own error, exit 2)."""
    folder = Path(tempfile.mkdtemp(prefix="georeg-test-"))
    try:
        path = folder / "s.sock"
        missing = (tmp_path / "missing.tif", pair[1])
        r = _register(missing, tmp_path / "a.tif", _env(path), "-q")
        assert r.returncode == 2 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))  # a socket file nobody listens on: a server that was killed
        s.close()
        r2 = _register(missing, tmp_path / "b.tif", _env(path), "-q")
        assert (r2.returncode, r2.stderr) == (r.returncode, r.stderr.replace("a.tif", "b.tif"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_socket_in_a_folder_others_can_enter_is_never_used(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert server._connect(folder / "s.sock") is None
    with pytest.raises(server.ServerError, match="closed to others"):
        server.Server(lambda argv: 0, folder / "s.sock").bind()


def test_a_second_server_on_the_same_socket_and_stop_without_a_server_say_so(running, tmp_path):
    path, _ = running
    r = subprocess.run([*GEOREG, "serve", "--socket", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "already listens" in r.stderr, r.stderr
    # started as scripts start one (server.start): the refusal with the log's end, no process left
    with pytest.raises(server.ServerError, match="exited .*already listens"):
        server.start(tmp_path / "second.log", {**os.environ, server.SOCKET_ENV: str(path)}, timeout_s=120)
    r = subprocess.run([*GEOREG, "serve", "--stop", "--socket", str(tmp_path / "none.sock")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no georeg server listens" in r.stderr, r.stderr


def test_status_says_whether_a_server_listens_and_what_it_did(running, tmp_path):
    path, log = running
    r = subprocess.run([*GEOREG, "serve", "--status", "--socket", str(path)], capture_output=True, text=True,
                       timeout=60)
    served = _requests(log)
    assert r.returncode == 0 and f"georeg server at {path}: pid " in r.stdout, (r.stdout, r.stderr)
    assert f"{served} commands served, 0 running" in r.stdout and "another version" not in r.stdout, r.stdout
    r = subprocess.run([*GEOREG, "serve", "--status", "--socket", str(tmp_path / "none.sock")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "no georeg server listens" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.slow  # a server of its own (the others share one)
def test_a_hang_up_stops_the_server_and_removes_its_socket(tmp_path):
    from helpers import georeg_server

    folder = Path(tempfile.mkdtemp(prefix="georeg-test-"))
    try:
        path = folder / "s.sock"
        with georeg_server({**os.environ, server.SOCKET_ENV: str(path)}, folder / "serve.log") as p:
            assert path.exists()
            p.send_signal(signal.SIGHUP)  # its terminal closed
            assert p.wait(timeout=60) == 0
            assert not path.exists() and "georeg server stopped" in (folder / "serve.log").read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # Ctrl-C's test covers the relay in the default run
def test_a_request_whose_caller_leaves_at_once_writes_nothing(running, pair, tmp_path):
    """The caller hands its command over and leaves at once (killed, or it gave up waiting): the
    child either never starts the command or is stopped by the caller's end-of-file."""
    path, log = running
    before = _requests(log)
    out = tmp_path / "out.tif"
    sock = server._connect(path)
    server._send(sock, {"argv": ["register", str(pair[0]), str(pair[1]), "-o", str(out), "--matcher", "baseline"],
                        "cwd": str(tmp_path), "env": dict(os.environ), "umask": 0o022,
                        "code": server.code_fingerprint()}, [0, 1, 2])
    sock.close()
    t0 = time.time()
    while _requests(log) == before and time.time() - t0 < 30:
        time.sleep(0.1)
    time.sleep(2)
    assert _requests(log) == before + 1 and list(tmp_path.iterdir()) == []


def test_the_environments_other_interpreter_names_use_the_same_server(running, pair, tmp_path):
    """The console script runs .venv/bin/python, the QGIS bridge the GEOREG_PYTHON it is given,
    often .venv/bin/python3: one installation, one server."""
    path, log = running
    names = [n for n in ("python3", "python") if (Path(sys.executable).parent / n).exists()
             and (Path(sys.executable).parent / n) != Path(sys.executable)]
    if not names:
        pytest.skip(f"no other name for {sys.executable} in its folder")
    before = _requests(log)
    r = subprocess.run([str(Path(sys.executable).parent / names[0]), "-m", "georeg.cli", "register",
                        str(tmp_path / "missing.tif"), str(pair[1]), "-o", str(tmp_path / "o.tif")],
                       capture_output=True, text=True, env=_env(path), timeout=120)
    assert r.returncode == 2 and "missing.tif" in r.stderr and "not using the server" not in r.stderr, r.stderr
    assert _requests(log) == before + 1
