"""The command line's plumbing (:mod:`georeg.cli`): logging and warnings on stderr, georeg errors
as one-line messages and exit codes, the options that every registering command shares (made from
:data:`georeg.options.OPTIONS`), the registration config built from them, the progress bar and
the machine-readable lines for front ends."""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from .config import RegistrationConfig
from .errors import GeoregError
from .options import cli_words

log = logging.getLogger("georeg")


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING - 10 * verbose if not quiet else logging.ERROR
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("georeg").setLevel(max(level, logging.DEBUG))
    for noisy in ("rasterio", "pyogrio", "fiona"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    _route_warnings(quiet)


def _route_warnings(quiet: bool) -> None:
    """georeg's warnings as 'warning: ...' lines on stderr (none with -q), every time they occur;
    other libraries' warnings as Python shows them."""
    import warnings

    from .errors import GeoregWarning

    shown = getattr(warnings.showwarning, "__wrapped__", warnings.showwarning)

    @functools.wraps(shown)
    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, GeoregWarning):
            shown(message, category, filename, lineno, file, line)
        elif not quiet:
            click.echo(f"warning: {cli_words(str(message))}", err=True)

    warnings.showwarning = show
    warnings.simplefilter("always", GeoregWarning)


def handle_errors(fn):
    """Turn georeg errors into clean messages and exit codes; no traceback unless -vv."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        verbose = (ctx.obj or {}).get("verbose", 0)
        try:
            return fn(*args, **kwargs)
        except GeoregError as exc:
            if verbose >= 2:
                log.exception("details")
            click.echo(f"Error: {cli_words(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; no output was written.", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("Error: out of memory; try a smaller --tile-size", err=True)
            sys.exit(1)
        except BrokenPipeError:  # 'georeg info | head -1': the reader left, as for any Unix tool
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # a bug: keep it short but honest
            if verbose >= 2:
                raise
            click.echo(f"Error: internal error ({type(exc).__name__}: {exc}); rerun with -vv for details "
                       "and report it", err=True)
            sys.exit(1)
    return wrapper


def verbosity_options(fn):
    """-v/-q accepted after the command name too (``georeg register ... -q``)."""
    fn = click.option("-q", "--quiet", "quiet_", is_flag=True, help="Only errors.")(fn)
    fn = click.option("-v", "--verbose", "verbose_", count=True, help="More messages (-vv: debug).")(fn)

    @functools.wraps(fn)
    def wrapper(*args, verbose_=0, quiet_=False, **kwargs):
        ctx = click.get_current_context()
        obj = ctx.ensure_object(dict)
        verbose = max(obj.get("verbose", 0), verbose_)
        quiet = obj.get("quiet", False) or quiet_
        obj.update(verbose=verbose, quiet=quiet)
        setup_logging(verbose, quiet)
        return fn(*args, **kwargs)
    return wrapper


def registration_options(fn):
    """Options shared by every command that registers (register, batch), made from
    :data:`georeg.options.OPTIONS` (names, help, choices; defaults from the config)."""
    from .options import OPTIONS

    for opt in reversed(OPTIONS):
        fn = _click_option(opt)(fn)
    # front ends that build options by name (the QGIS plugin, from 'georeg options --json')
    return click.option("--options-json", "options_json", default=None, hidden=True,
                        help="A JSON object {option name: value} applied over the flags.")(fn)


def _click_option(o):
    kw: dict = {"help": o.help}
    if o.envvar:
        kw.update(envvar=o.envvar, show_envvar=True)
    if o.kind == "flag":
        return click.option(o.flag, o.name, is_flag=True, **kw)
    if o.kind == "switch":
        name = o.flag[2:]
        return click.option(f"--{name}/--no-{name}", o.name, default=o.default, show_default=True, **kw)
    if o.kind == "list":
        return click.option(o.flag, o.name, multiple=True, metavar=o.metavar, **kw)
    types = {"choice": click.Choice(o.choices or ()), "int": int, "float": float, "path": click.Path(),
             "text": str, "shift": str}
    default = o.default
    return click.option(o.flag, o.name, type=types[o.kind], default=default, show_default=default is not None,
                        **kw)


def registering_command(fn):
    """What register and batch share: the registration options, -v/-q, the click context and
    georeg's error handling (clean messages and exit codes)."""
    return registration_options(verbosity_options(click.pass_context(handle_errors(fn))))


def build_config(params: dict, tie_points=None, report=None, quicklook=None) -> RegistrationConfig:
    """The RegistrationConfig for a dict of the shared CLI options."""
    import json

    from .errors import ConfigError
    from .options import config_from_options

    params = dict(params)
    given = params.pop("options_json", None)
    if given:
        try:
            values = json.loads(given)
        except ValueError as exc:
            raise ConfigError(f"--options-json must be a JSON object of option names and values; {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"--options-json must be a JSON object of option names and values; got {given[:80]!r}")
        params.update(values)
    cfg = config_from_options(params)
    return cfg.with_options(output={"tie_points": tie_points, "report": report, "quicklook": quicklook})


class Progress:
    """Progress of one registration on stderr. The bar is drawn at the first report, after the
    inputs were opened and checked (an input error is not preceded by 'registering 0%'), and its
    label names the stage now running, not the one before."""

    def __init__(self, quiet: bool, machine: bool, steps: int = 1000):
        self.quiet, self.machine, self.steps = quiet, machine, steps
        self.bar = None
        self.done = 0

    def __enter__(self) -> Progress:
        return self

    def __call__(self, fraction: float, message: str) -> None:
        if self.machine:
            machine_line("PROGRESS", (fraction, message))
            return
        if self.quiet:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=self.steps, label=message, file=sys.stderr, show_eta=False)
            self.bar.__enter__()
        self.bar.label = message
        step = int(fraction * self.steps) - self.done
        if step > 0:
            self.done += step
            self.bar.update(step)
        else:
            self.bar.render_progress()

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def machine_line(kind: str, payload) -> None:
    import json

    if kind == "PROGRESS":
        click.echo(f"PROGRESS {payload[0]:.4f} {payload[1]}")
    else:
        click.echo(f"RESULT {json.dumps(payload, default=str)}")
    sys.stdout.flush()
