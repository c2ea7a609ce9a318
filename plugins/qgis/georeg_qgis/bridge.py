"""How the plugin runs georeg: in-process when QGIS's Python can import it, otherwise the georeg
CLI of a configured Python environment in a subprocess that streams machine-readable lines
('PROGRESS <0-1> <message>', 'RESULT <json>'). Cancel kills the child. The child's environment is
cleaned of variables that point rasterio at QGIS's own GDAL/PROJ data."""

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading

from qgis.core import QgsProcessingException

SETTING_PYTHON = "GEOREG_PYTHON"
CLEANED = ("PYTHONPATH", "PYTHONHOME", "PROJ_LIB", "PROJ_DATA", "GDAL_DATA")


def in_process():
    """True when georeg (and torch) import in QGIS's own Python."""
    try:
        import torch  # noqa: F401

        import georeg  # noqa: F401
    except ImportError:
        return False
    return True


def configured_python():
    value = ""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(SETTING_PYTHON) or ""
    except (ImportError, KeyError):
        pass
    return value or os.environ.get("GEOREG_PYTHON", "")


def child_env():
    return {k: v for k, v in os.environ.items() if k not in CLEANED}


_CHECKED = {}  # python path -> (its modification time, georeg version): checked once per QGIS session


def check_python(python):
    """Raise a clear QgsProcessingException when the environment is unset or broken; returns the
    georeg version there. A Python that passed is not checked again (the check imports torch,
    about 2 s, which a running 'georeg serve' otherwise spares each run)."""
    if not python:
        raise QgsProcessingException(
            "georeg is not installed in QGIS's Python and no georeg environment is configured. Set "
            "Processing > Options > Providers > georeg > 'Python of the georeg environment' (or the "
            "GEOREG_PYTHON environment variable) to the python of an environment where georeg is installed, "
            "for example /path/to/georeg/.venv/bin/python.")
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise QgsProcessingException(
            f"the configured georeg Python does not exist or is not executable: {python}. Point "
            "GEOREG_PYTHON (or the georeg Processing setting) at the python of the georeg environment.")
    stamp = os.stat(python).st_mtime_ns
    if _CHECKED.get(python, (None,))[0] == stamp:
        return _CHECKED[python][1]
    try:
        out = subprocess.run([python, "-c", "import georeg, georeg.cli, torch; print(georeg.__version__)"],
                             capture_output=True, text=True, timeout=120, env=child_env(), cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QgsProcessingException(f"the configured georeg Python could not be started: {python} ({exc})") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise QgsProcessingException(
            f"the configured Python cannot import georeg: {python} ({last}). Install georeg there "
            "(pip install -e . in the georeg folder) or point GEOREG_PYTHON at the right environment.")
    _CHECKED[python] = (stamp, out.stdout.strip())
    return _CHECKED[python][1]


_SPECS = {}


def option_specs(python=None):
    """georeg's option table (name, flag, kind, help, choices, default): from georeg itself when
    it imports here, else from 'georeg options --json' of the configured environment (asked once
    per session). An empty list when georeg cannot be reached yet: the algorithms then offer
    their fixed parameters only."""
    if in_process():
        from georeg.options import specs

        return specs()
    python = python or configured_python()
    if not python:
        return []
    if python not in _SPECS:
        try:
            out = subprocess.run([python, "-m", "georeg.cli", "options", "--json"], capture_output=True, text=True,
                                 timeout=60, env=child_env(), cwd=tempfile.gettempdir())
            _SPECS[python] = json.loads(out.stdout) if out.returncode == 0 else []
        except (OSError, ValueError, subprocess.TimeoutExpired):
            _SPECS[python] = []
    return _SPECS[python]


def _remove_partials(args, pid):
    """A killed child cannot clean up: remove the staged '.NAME.partial-PID.EXT' files it may have
    left next to any output path among its arguments (georeg.atomic's naming)."""
    import os

    for a in args:
        a = str(a)
        parent, name = os.path.split(a)
        if not name or not os.path.isdir(parent or "."):
            continue
        stem, ext = os.path.splitext(name)
        staged = os.path.join(parent, f".{stem}.partial-{pid}{ext}")
        if os.path.isfile(staged):
            os.remove(staged)
        for entry in os.listdir(parent or "."):
            # the writer's scratch folders and the output lock of that run
            path = os.path.join(parent, entry)
            if entry.startswith(f".georeg-{pid}-") and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif entry == f".{name}.lock" and os.path.isfile(path):
                with open(path) as f:
                    owner = f.read().split(" ", 1)[0]
                if owner == str(pid):
                    os.remove(path)


def run_cli(args, feedback, python=None):
    """Run 'python -m georeg.cli --machine ARGS' with progress and cancel; returns the RESULT dict."""
    python = python or configured_python()
    version = check_python(python)
    feedback.pushInfo(f"georeg {version} in {python}")
    cmd = [python, "-m", "georeg.cli", "--machine", *[str(a) for a in args]]
    feedback.pushDebugInfo(" ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
                            cwd=tempfile.gettempdir())
    lines = queue.Queue()

    def pump(stream, tag):
        for line in stream:
            lines.put((tag, line.rstrip("\n")))
        lines.put((tag, None))

    threads = [threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True)]
    for t in threads:
        t.start()
    result, errors, open_streams = None, [], 2
    while open_streams:
        if feedback.isCanceled():
            proc.terminate()  # SIGTERM: georeg removes its staged outputs itself
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _remove_partials(args, proc.pid)
            raise QgsProcessingException("cancelled; the georeg run was stopped and wrote no output")
        try:
            tag, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        if tag == "out" and line.startswith("PROGRESS "):
            parts = line.split(" ", 2)
            feedback.setProgress(100.0 * float(parts[1]))
            if len(parts) > 2:
                feedback.setProgressText(parts[2])
        elif tag == "out" and line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        elif tag == "err" and line.strip():
            errors.append(line)
            if line.startswith("Error") or line.startswith("failed:"):
                feedback.reportError(line)
            else:
                feedback.pushDebugInfo(line)
    code = proc.wait()
    if result is not None and result.get("quality") == "uncertain":
        # outputs were written; QGIS shows the verdict as a warning instead of failing the algorithm
        feedback.reportError(f"georeg: the result is uncertain: {result.get('verdict', '')}", False)
        return result
    if code != 0 and (result is None or "summary" not in result):
        msg = next((e for e in reversed(errors) if e.startswith("Error")), errors[-1] if errors else "")
        raise QgsProcessingException(msg or f"georeg exited with code {code}")
    return result or {}
