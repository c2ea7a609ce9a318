"""Running batch tasks on a Dask cluster (``pip install georeg[dask]``).

Workers get a plugin that applies georeg's worker settings (malloc tuning, one torch thread);
matchers are cached per worker process by :mod:`georeg.batch`, so each worker loads its weights
once. Tasks are submitted with retries, so a pair whose worker dies is rerun elsewhere; only the
small summary row travels back: rasters are written by the workers straight to OUTDIR.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ConfigError


def _quiet_dask() -> None:
    """Dask logs a few dozen INFO lines per LocalCluster start (scheduler, nannies, workers); they
    are shown with -v only. The environment variable reaches the worker processes too."""
    import logging
    import os

    if logging.getLogger("georeg").isEnabledFor(logging.INFO):
        return
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


def _client(scheduler: str, workers: int | None):
    _quiet_dask()
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("the Dask executor needs dask[distributed]: pip install 'georeg[dask]'") from None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="20s"), None
    except OSError as exc:
        raise ConfigError(f"could not reach the Dask scheduler at {scheduler}: {exc}; check the address") from None


def run_dask(tasks: list, scheduler: str, workers: int | None, finished: Callable[[dict], None],
             retries: int = 2) -> None:
    from distributed import WorkerPlugin, as_completed

    from .batch import failed_row, run_task

    class GeoregWorker(WorkerPlugin):
        name = "georeg-worker"

        def setup(self, worker):
            from .runtime import configure_worker

            configure_worker(1)

    client, cluster = _client(scheduler, workers)
    try:
        client.register_plugin(GeoregWorker())
        futures = {client.submit(run_task, t, pure=False, retries=retries, key=f"georeg-pair-{t.index}-{t.key}"): t
                   for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                finished(fut.result())
            except Exception as exc:  # the worker died more than `retries` times
                finished(failed_row(task, f"failed on the Dask cluster: {type(exc).__name__}: {exc}"))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
