"""The ``georeg`` command line (also ``rio georeg`` through rasterio's plugin entry point).

Thin by design: options are declared once, turned into the same frozen config objects the Python
API uses, and each command is one library call. georeg errors become a one-line message and
exit code 2 (usage or input) or 1 (registration failed); nothing half-written is left behind.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from . import __version__
from .cli_support import (
    Progress,
    build_config,
    handle_errors,
    machine_line,
    registering_command,
    setup_logging,
    verbosity_options,
)
from .config import (
    RESAMPLINGS,
    SIDE_SUFFIXES,
    RegistrationConfig,
    side_output,
)
from .errors import GeoregError
from .options import cli_words

log = logging.getLogger("georeg")

MATCHER_CHOICES = ("baseline", "kgl", "rrl")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="georeg")
@click.option("-v", "--verbose", count=True, help="More messages (-vv: debug and tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option("--machine", is_flag=True, hidden=True,
              help="Machine-readable output for front ends: 'PROGRESS <0-1> <message>' lines and a final "
                   "'RESULT <json>' line on stdout, no progress bar.")
@click.pass_context
def georeg(ctx: click.Context, verbose: int, quiet: bool, machine: bool) -> None:
    """Co-register an optical reference with a SAR or thermal target."""
    from .runtime import defer_boto3, limit_gdal_cache, tune_malloc

    tune_malloc()
    limit_gdal_cache()
    defer_boto3()  # before rasterio's import
    setup_logging(verbose, quiet or machine)
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, quiet=quiet or machine, machine=machine)


@georeg.command()
@click.argument("reference", type=click.Path())
@click.argument("target", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Corrected target GeoTIFF.")
@click.option("--tie-points", default="auto", show_default=True,
              help="Tie-point GeoPackage path; 'auto' writes OUTPUT_tiepoints.gpkg, 'none' skips it.")
@click.option("--report", default="auto", show_default=True,
              help="JSON report path; 'auto' writes OUTPUT_report.json, 'none' skips it.")
@click.option("--quicklook", default="auto", show_default=True,
              help="Quicklook PNG path; 'auto' writes OUTPUT_quicklook.png, 'none' skips it.")
@registering_command
def register(ctx, reference, target, output, tie_points, report, quicklook, **params):
    """Register TARGET onto REFERENCE and write the corrected target to the -o/--output GeoTIFF
    (plus tie points, report and quicklook beside it unless set to 'none')."""
    from .errors import InputError
    from .preflight import preflight

    if not output.strip() or Path(output).name in ("", ".", ".."):
        raise InputError(f"register(): output must be a file path such as out.tif; got {output!r}")
    cfg = build_config(params, *(side_output(output, kind, value, "auto") for kind, value in
                                 (("tie_points", tie_points), ("report", report), ("quicklook", quicklook))))
    # paths and outputs before the heavy imports (torch): a mistyped path is answered at once
    preflight(reference, target, output, cfg, warn_same=False)
    from .outputs import mask_text, modality_text, quality_text, shift_text
    from .pipeline import register as run

    quiet = ctx.obj.get("quiet", False)
    machine = ctx.obj.get("machine", False)
    with Progress(quiet, machine) as progress:
        result = run(reference, target, output, cfg, progress=progress)
    rep = result.report
    if machine:
        machine_line("RESULT", {"outputs": result.outputs, "model": rep["model"]["type"], "shift": rep["shift"],
                            "residuals": rep["residuals"], "counts": rep["counts"], "quality": rep["quality"],
                            "verdict": rep["verdict"]["reason"], "target": modality_text(rep),
                            "quality_text": quality_text(rep)})
    if not quiet:
        sh = rep["shift"]
        acc = rep["residuals"]
        kind = rep["model"]["type"] + (" (auto)" if rep["model"]["requested"] == "auto" else "")
        click.echo(
            f"{kind}: {shift_text(sh)}; "
            f"{rep['counts']['inliers']}/{rep['counts']['tie_points']} inliers, RMSE {acc['rmse_px']:.2f} px, "
            f"CE90 {acc['ce90_px']:.2f} px; {rep['timings_s']['total']:.1f} s")
        click.echo(f"  {modality_text(rep)}")
        masks = mask_text(rep)
        if masks:
            click.echo(f"  {masks}")
        click.echo(f"  {quality_text(rep)}")
        for kind, path in result.outputs.items():
            how = f" ({rep['model']['output_mode']})" if kind == "raster" and rep["model"].get("output_mode") else ""
            click.echo(f"  {kind}: {path}{how}")
    if result.quality != "reliable":
        verdict = rep["verdict"]
        if not cfg.output.accept_uncertain:
            click.echo(f"Error: the result is {result.quality}: {verdict['reason']}. The outputs were written; "
                       "check them, or pass --accept-uncertain to accept such results.", err=True)
            sys.exit(1)
        if not quiet:
            click.echo(f"warning: the result is {result.quality}: {verdict['reason']}", err=True)


@georeg.command()
@click.argument("report", type=click.Path())
@click.argument("raster", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Corrected raster.")
@click.option("--align-grids/--no-align-grids", default=None,
              help="Resample onto the reference grid (default: as in the report).")
@click.option("--resampling", type=click.Choice(RESAMPLINGS), default=None, help="Default: as in the report.")
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimised GeoTIFF.")
@click.option("--co", "creation_options", multiple=True, metavar="NAME=VALUE",
              help="GDAL creation option (repeatable). Default: those of the registration, for the same format.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--force", is_flag=True, help="Apply even to a raster that does not overlap the registered target.")
@click.option("--crs", default=None, metavar="CRS",
              help="CRS of RASTER's georeferencing, for a file without one (a world file without a .prj). Default: "
                   "the file's, else the one the registration assigned to its target (--target-crs).")
@verbosity_options
@click.pass_context
@handle_errors
def apply(ctx, report, raster, output, creation_options, **options):
    """Apply a registration REPORT (from 'georeg register') to another RASTER of the same scene."""
    from .apply import apply_report

    # options: align_grids, resampling, cog, overwrite, force, crs, named as apply_report's keywords
    res = apply_report(report, raster, output, creation_options=creation_options or None, **options)
    if ctx.obj.get("machine"):
        machine_line("RESULT", res)
    elif not ctx.obj.get("quiet"):
        click.echo(f"{res['mode']}: {res['output']}")


@georeg.command()
@click.argument("manifest", required=False, type=click.Path())
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--pairs", nargs=2, metavar="REF_GLOB TARGET_GLOB", default=None,
              help="Build the manifest from two globs, paired in sorted order (quote them).")
@click.option("--stac", "stac", multiple=True, type=click.Path(),
              help="STAC Item or ItemCollection JSON (repeatable): each target item is paired with the reference "
                   "item it overlaps most (then nearest in date).")
@click.option("--reference-asset", default=None, help="With --stac: the reference asset key or band name (e.g. B04).")
@click.option("--target-asset", default=None, help="With --stac: the target asset key or band name (e.g. vh).")
@click.option("--workers", type=int, default=None, help="Local worker processes (default: all cores).")
@click.option("--scheduler", default=None,
              help="Run on Dask: 'tcp://host:port' of an existing scheduler, or 'local' for a LocalCluster.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Skip pairs whose outputs and report are complete and match the row and options.")
@registering_command
def batch(ctx, manifest, outdir, pairs, stac, reference_asset, target_asset, **params):
    """Register every pair of MANIFEST (CSV: reference,target[,output][,options...]) into OUTDIR."""
    from . import batch as B

    run_opts = {k: params.pop(k) for k in ("workers", "scheduler", "resume")}
    cfg = build_config(params)
    from .preflight import check_creation_options

    check_creation_options(cfg.output.creation_options, cfg.output.cog)  # once, not once per row
    scheduler = run_opts["scheduler"]
    if scheduler:
        B.check_scheduler(scheduler)
    out = Path(outdir)
    tasks = _batch_tasks(manifest, pairs, stac, reference_asset, target_asset, out, cfg)
    verbose = ctx.obj.get("verbose", 0)
    quiet = ctx.obj.get("quiet", False)
    with click.progressbar(length=len(tasks), label="pairs", file=sys.stderr, hidden=quiet) as bar:
        def progress(row, done, total):
            if ctx.obj.get("machine"):
                machine_line("PROGRESS", (done / total, f"{Path(row['target']).name}: {row['status']}"))
            bar.update(1)
            if verbose:
                msg = row["status"] if row["status"] != "failed" else f"FAILED: {row['error']}"
                click.echo(f"\n  [{row['index'] + 1}/{total}] {Path(row['target']).name}: {msg}", err=True)

        try:
            rows = B.run(tasks, out, cfg, executor="dask" if scheduler else "local", progress=progress, **run_opts)
        except KeyboardInterrupt:
            click.echo(f"\nInterrupted: finished pairs are kept and listed in {out / 'summary.csv'}; "
                       "no half-written output is left. Rerun the same command to continue.", err=True)
            sys.exit(130)
    failed = [r for r in rows if r["status"] in ("failed", "uncertain")]
    if ctx.obj.get("machine"):
        machine_line("RESULT", {"summary": str(out / "summary.csv"), "pairs": len(rows), "failed": len(failed)})
    if not quiet:
        click.echo(f"{len(rows) - len(failed)} of {len(rows)} pairs registered and reliable "
                   f"({sum(1 for r in rows if r['status'].startswith('skipped'))} already complete); "
                   f"summary: {out / 'summary.csv'}")
    for r in failed:
        click.echo(f"{r['status']}: {Path(r['target']).name}: {cli_words(r['error'])}", err=True)
    sys.exit(1 if failed else 0)


def _batch_tasks(manifest, pairs, stac, reference_asset, target_asset, out: Path, cfg):
    """The batch's tasks from exactly one of a manifest, two globs or STAC items."""
    from . import manifest as M
    from .errors import InputError

    if sum(x is not None and x != () for x in (manifest, pairs, stac)) != 1:
        raise InputError("give one of a MANIFEST, --pairs REF_GLOB TARGET_GLOB or --stac ITEMS.json")
    if stac and not (reference_asset and target_asset):
        raise InputError("--stac needs --reference-asset and --target-asset (asset keys or band names, "
                         "e.g. --reference-asset B04 --target-asset vh)")
    if manifest:
        return M.read_manifest(manifest, out, cfg)
    if pairs:
        return M.tasks_from_rows(M.rows_from_globs(*pairs), out, cfg)
    from .stac import load_items, pair_rows

    return M.tasks_from_rows(pair_rows(load_items(list(stac)), reference_asset, target_asset), out, cfg)


@georeg.command("options")
@click.option("--json", "as_json", is_flag=True, help="The table as JSON (for front ends such as the QGIS plugin).")
def options_command(as_json):
    """List the registration options: name, flag, kind, default and choices."""
    import json

    from .options import specs

    table = specs()
    if as_json:
        click.echo(json.dumps(table))
        return
    for s in table:
        choices = f" ({'|'.join(s['choices'])})" if s["choices"] else ""
        column = "" if s["manifest"] else "  [not a manifest column]"
        click.echo(f"{s['flag']:20s} {s['kind']:7s} default {s['default']!r}{choices}{column}")


@georeg.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier demo in OUTDIR.")
@verbosity_options
@click.pass_context
@handle_errors
def demo(ctx, outdir, overwrite):
    """Register the bundled demo pair (Sentinel-2 RGB and Sentinel-1 VH, 384 px; contains modified
    Copernicus Sentinel data 2020) with the default settings, writing into OUTDIR."""
    from .pipeline import register as run

    here = Path(__file__).resolve().parent / "demo"
    ref, tgt = here / "s2_rgb.tif", here / "s1_vh.tif"
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    raster = out / "s1_vh_registered.tif"
    cfg = RegistrationConfig().with_options(output={
        **{kind: side_output(raster, kind, "auto") for kind in SIDE_SUFFIXES}, "overwrite": overwrite})
    quiet = ctx.obj.get("quiet", False)
    if not quiet:
        click.echo(f"reference: {ref}\ntarget:    {tgt} (moved by +35 m east, +20 m north)", err=True)
    with Progress(quiet, ctx.obj.get("machine", False)) as progress:
        result = run(str(ref), str(tgt), str(raster), cfg, progress=progress)
    rep = result.report
    shift = rep["model"]["parameters"]["shift_px_at_centre"]
    click.echo(f"{rep['model']['type']} model, shift at the centre {shift[0]:+.2f}, {shift[1]:+.2f} px; "
               f"quality: {rep['quality']}")
    for kind, path in result.outputs.items():
        click.echo(f"  {kind}: {path}")
    click.echo("Open the raster and the tie points in QGIS over the reference to see the correction.")


@georeg.command()
@verbosity_options
@click.pass_context
@handle_errors
def info(ctx):
    """Versions, devices and available matchers."""
    import platform

    import kornia
    import rasterio
    import torch

    click.echo(f"georeg {__version__}")
    click.echo(f"python {platform.python_version()}, torch {torch.__version__}, kornia {kornia.__version__}, "
               f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")
    cores = os.cpu_count() or 1
    threads = os.environ.get("GEOREG_THREADS")
    uses = ("a registration uses one torch thread (--threads)" if not threads else
            f"GEOREG_THREADS={threads!r} is not a number of threads: registrations refuse to start"
            if not threads.strip().isdigit() else
            "a registration uses torch's default threads, one per core (GEOREG_THREADS=0)" if int(threads) == 0 else
            f"a registration uses {int(threads)} torch threads (GEOREG_THREADS)")
    click.echo(f"cpu: {cores} cores; {uses}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            click.echo(f"cuda:{i}: {torch.cuda.get_device_name(i)}")
    else:
        click.echo("cuda: not available")
    click.echo("matchers:")
    _list_matchers(verbose=False)


def _list_matchers(verbose: bool) -> None:
    from . import matchers
    from .matchers.baseline import BaselineMatcher

    shipped = matchers.available()
    click.echo(f"  baseline: {BaselineMatcher.description}")
    for name in matchers.LEARNED:
        man = shipped.get(name)
        if man is None:
            click.echo(f"  {name}: no weights shipped")
            continue
        click.echo(f"  {name}: {man.get('architecture')} width {man.get('width')}, trained on "
                   f"{man.get('training_data')}; FPR95 val {man.get('val_fpr95')}, test {man.get('test_fpr95')}"
                   + (f" with structural fusion (network alone {man['test_fpr95_network_only']})"
                      if man.get("fusion") and "test_fpr95_network_only" in man else "")
                   + f", baseline {man.get('baseline_test_fpr95')} "
                   f"[{man.get('file')}, sha256 {str(man.get('sha256'))[:12]}...]")
        if man.get("auto_default") is False:
            click.echo(f"      {man.get('auto_note', 'not used by --matcher auto')}")
        if verbose:
            for key in ("split", "steps", "command", "created"):
                if key in man:
                    click.echo(f"      {key}: {man[key]}")


@georeg.group()
def matchers():
    """The patch matchers and their shipped weights."""


@matchers.command("list")
@verbosity_options
@click.pass_context
@handle_errors
def matchers_list(ctx):
    """Each matcher with its manifest (training data, split, FPR95, checksum)."""
    _list_matchers(verbose=True)


@georeg.command()
@click.option("--socket", "socket_", type=click.Path(dir_okay=False), default=None,
              help="Listen here (default: GEOREG_SERVER_SOCKET, else server.sock in a folder of your own: "
                   "$XDG_RUNTIME_DIR/georeg or <tmp>/georeg-<uid>). Clients find another path through "
                   "GEOREG_SERVER_SOCKET.")
@click.option("--idle-minutes", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Stop after this many minutes without a request (0: never).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads of each command that gives no --threads and no GEOREG_THREADS of its own "
                   "(default: as in its own process, one).")
@click.option("--stop", is_flag=True, help="Stop the server listening at the socket (running requests finish).")
@click.option("--status", is_flag=True,
              help="Say whether a server listens at the socket, and what it has done (exit code 1: none).")
@verbosity_options
@click.pass_context
@handle_errors
def serve(ctx, socket_, idle_minutes, threads, stop, status):
    """Keep a warm georeg for 'georeg register' (and 'georeg demo'): torch, kornia and the networks
    loaded once, so a command does not spend about 2 s importing them. Runs in the foreground ('georeg serve &' for
    the background) until Ctrl-C, --stop or --idle-minutes without a request. Each 'georeg register'
    of your user then runs in a child of it, with your terminal, folder and environment, and exits
    with the same code and outputs; GEOREG_SERVER=off runs a command in its own process. Linux only."""
    from . import server

    path = Path(socket_).expanduser().absolute() if socket_ else server.socket_path()
    if status:
        st = server.status(path)
        if st is None:
            click.echo(f"no georeg server listens at {path}")
            sys.exit(1)
        idle = f"; stops after {st['idle_s'] / 60:g} min without a request" if st["idle_s"] else ""
        code = "" if st["current"] else "; it runs another version of georeg than this one (restart it)"
        click.echo(f"georeg server at {path}: pid {st['pid']}, up {st['up_s'] / 60:.1f} min, "
                   f"{st['served']} commands served, {st['running']} running, "
                   f"{st['threads'] or 'as each command asks (default 1)'} torch threads each{idle}{code}")
        return
    if stop:
        pid = server.stop(path)
        click.echo(f"stopped the georeg server at {path} (pid {pid}); running requests finish", err=True)
        return
    import signal

    from .interrupts import terminate as _terminate

    srv = server.Server(run_command, path, idle_minutes * 60)
    srv.bind()
    signal.signal(signal.SIGHUP, _terminate)  # its terminal closed: stop and remove the socket
    try:
        _warm_up()
        srv.threads = threads
        default = path == server.socket_path()
        click.echo(f"{server.READY_LINE} {path} (pid {os.getpid()}); 'georeg register' and 'georeg demo' run here"
                   + ("" if default else f" where GEOREG_SERVER_SOCKET={path}")
                   + (f" until {idle_minutes:g} min pass without a request" if idle_minutes else "")
                   + ". Stop it with Ctrl-C or 'georeg serve --stop'.", err=True)
        srv.serve_forever()
    except KeyboardInterrupt:
        click.echo("georeg server stopped", err=True)
    finally:
        srv.close()


def _warm_up() -> None:
    """Import torch, kornia and the output libraries and register the bundled demo pair once, on
    one torch thread and the CPU (a forked child inherits no thread pool and no CUDA context), so
    that the server's children start warm."""
    import tempfile
    import warnings

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # a CUDA check forked children survive
    import torch

    from .pipeline import register as run

    torch.set_num_threads(1)
    here = Path(__file__).resolve().parent / "demo"
    with tempfile.TemporaryDirectory(prefix="georeg-warm-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(tmp) / "warm.tif"
        cfg = RegistrationConfig().with_options(matching={"device": "cpu"}, output={
            "tie_points": str(out.with_suffix(".gpkg")), "report": str(out.with_suffix(".json")),
            "quicklook": str(out.with_suffix(".png"))})
        try:
            run(str(here / "s2_rgb.tif"), str(here / "s1_vh.tif"), str(out), cfg)
        except GeoregError as exc:  # the server still works, its children just start colder
            log.warning("the warm-up registration of the demo pair failed: %s", exc)


def run_command(argv: list[str] | None = None) -> int:
    """Run ``georeg <argv>`` (default: this process's arguments) here; its exit code. What
    :func:`main` runs, and what a ``georeg serve`` child runs for a forwarded command."""
    try:
        # not click's standalone mode: it turns Ctrl-C during argument parsing into 'Aborted!', exit 1
        rv = georeg.main(args=argv, prog_name="georeg", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _ignore_signals()
        click.echo("Interrupted; no output was written.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:  # the commands' own exit codes
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        click.echo(str(exc.code), err=True)
        return 1
    return rv if isinstance(rv, int) else 0


def main(try_server: bool = True) -> None:
    """``try_server``: hand 'register' to a running ``georeg serve`` (the console script has
    already tried, before importing this module)."""
    import signal

    from .interrupts import terminate as _terminate
    from .server import forward

    for sig in (signal.SIGTERM, signal.SIGINT):  # also for 'python -m georeg.cli' (the QGIS bridge)
        signal.signal(sig, _terminate)
    code = forward(sys.argv[1:]) if try_server else None  # a running 'georeg serve' takes 'register'
    if code is None:
        try:
            code = run_command()
        finally:
            _ignore_signals()
    leave(code)


def leave(code: int) -> None:
    """End the process with ``code`` once a command is done, without the interpreter's teardown
    of every module's objects: with torch loaded that takes 0.25-0.4 s of each command (a 256 px
    pair's 2.5 s; ``benchmarks/scene_speed.py`` measures it). The outputs are closed and in place
    by then, and what asked to run at exit still runs first (logging's flush, multiprocessing's
    and Dask's clean-up, temporary folders). Where a thread that Python waits for at exit is
    still running (none after georeg's own commands), the interpreter's usual way."""
    import atexit
    import threading

    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    waited_for = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if run_exit_functions is None or waited_for:
        sys.exit(code)
    from .interrupts import flush_standard_streams

    run_exit_functions()
    flush_standard_streams()
    os._exit(code)


def _ignore_signals() -> None:
    """The command has finished (or been interrupted and cleaned up): a Ctrl-C or SIGTERM during
    the interpreter's shutdown (worker pools joined at exit) must not turn it into a crash."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


rio_georeg = georeg

if __name__ == "__main__":
    main()
