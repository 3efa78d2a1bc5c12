"""Cohort batch processing on Dask distributed.

By default an in-process ``LocalCluster`` on loopback (worker processes ×
threads sized to the machine), or an existing cluster via its scheduler
address. Each study is one task (:func:`.pipeline.process_study`) submitted
with retries, so a lost worker's studies are re-run on another worker; models
are cached per worker process by the inference engine, so each worker loads a
model once, not once per task.
"""
from __future__ import annotations

import csv
import io as text_io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from RadAISegmentLib.atomic import atomic_path, write_text_atomic
from RadAISegmentLib.progress import CancelToken, ProgressCallback

from .pipeline import TABLE_KEYS, model_settings, process_study
from .studies import discover_studies

TABLE_COLUMNS = ("study", "status", "error") + TABLE_KEYS


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    results: list[dict] = field(default_factory=list)
    table_csv: Optional[Path] = None
    table_parquet: Optional[Path] = None

    @property
    def studies_per_minute(self) -> float:
        processed = self.done + self.skipped + self.failed
        return 60.0 * processed / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        return (f"{self.done} done, {self.skipped} skipped (unchanged), {self.failed} failed in {self.seconds:.1f} s "
                f"({self.studies_per_minute:.1f} studies/min)")


def default_cluster_size(cores: Optional[int] = None) -> tuple[int, int]:
    """(workers, torch threads per worker): one worker per 2 cores, all cores used; at least one worker."""
    cores = cores or os.cpu_count() or 1
    workers = max(1, cores // 2)
    return workers, max(1, cores // workers)


def start_local_client(workers: Optional[int] = None):
    """A ``distributed.Client`` on a new ``LocalCluster`` bound to loopback (no dashboard).

    Each worker process gets ``cores // workers`` inference threads (workers x threads = cores). Dask's
    nannies normally start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's
    adaptive mmap threshold: every large array is then mapped and faulted in afresh, and this pipeline
    ran at half speed in a worker (measured by ``benchmarks/batch.py``). RadAI's workers keep glibc's
    default; the setting is made in this process's Dask config, so restarted workers keep it too.
    """
    import dask
    from distributed import Client, LocalCluster
    from RadAISegmentLib.device import THREADS_ENV
    workers = workers or default_cluster_size()[0]
    torch_threads = max(1, (os.cpu_count() or 1) // workers)
    environment = {"OMP_NUM_THREADS": str(torch_threads), "MKL_NUM_THREADS": str(torch_threads),
                   "OPENBLAS_NUM_THREADS": "1", THREADS_ENV: str(torch_threads)}
    dask.config.set({"distributed.nanny.pre-spawn-environ": environment})   # set before each worker starts
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, env=environment)
    return Client(cluster)


def write_cohort_table(results: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """One row per study × segment (failed studies: one row with the error), as CSV and Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{column: row.get(column) for column in TABLE_COLUMNS}
            for result in sorted(results, key=lambda r: r["study"]) for row in result["rows"]]
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    csv_path = write_text_atomic(out_dir / "cohort.csv", buffer.getvalue())
    table = pa.Table.from_pylist(rows, schema=pa.schema(
        [(c, pa.string()) if c in ("study", "status", "error", "name") else (c, pa.float64()) for c in TABLE_COLUMNS]))
    parquet_path = out_dir / "cohort.parquet"
    with atomic_path(parquet_path) as tmp:
        pq.write_table(table, tmp)
    return csv_path, parquet_path


def _connect(client_class, scheduler: str):
    """A client of the Dask scheduler at ``scheduler``; an unreachable address is an InputError naming it."""
    from RadAISegmentLib.errors import InputError
    try:
        return client_class(scheduler)
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"Cannot reach the Dask scheduler at {scheduler} ({error}); start it (`dask scheduler`) "
                         "with workers, or check the address (tcp://HOST:PORT).") from None


def run_batch(source: str | os.PathLike, out_dir: str | os.PathLike, model_id: Optional[str] = None,
              measure: bool = True, explain: bool = False, device: str = "auto", fast: bool = False,
              scheduler: Optional[str] = None, workers: Optional[int] = None, client=None,
              progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
              on_result: Optional[Callable[[dict], None]] = None) -> BatchSummary:
    """Process a cohort; returns counts and writes ``cohort.csv`` / ``cohort.parquet`` into ``out_dir``.

    Args:
        source: cohort folder or CSV manifest (see :mod:`.studies`).
        scheduler: ``tcp://host:port`` of an existing Dask scheduler; default a LocalCluster.
        workers: LocalCluster worker processes (default: one per 2 cores).
        client: an existing ``distributed.Client`` (tests, notebooks); not closed here.
    """
    from distributed import Client, as_completed
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    studies = discover_studies(source)
    settings = {**model_settings(model_id), "measure": measure, "explain": explain, "device": device, "fast": fast}
    own_client = client is None
    if own_client:
        client = _connect(Client, scheduler) if scheduler else start_local_client(workers)
    summary = BatchSummary()
    try:
        futures = [client.submit(process_study, study, str(out_dir), settings, key=f"radai-study-{study.name}-{i}",
                                 pure=False, retries=3) for i, study in enumerate(studies)]
        for index, future in enumerate(as_completed(futures), start=1):
            if cancel is not None and cancel.cancelled:
                client.cancel(futures)
                cancel.raise_if_cancelled()
            result = future.result()
            summary.results.append(result)
            setattr(summary, result["status"], getattr(summary, result["status"]) + 1)
            if on_result:
                on_result(result)
            if progress:
                progress(index / len(futures), f"{result['study']}: {result['status']}")
    finally:
        if own_client:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    summary.seconds = time.perf_counter() - started
    summary.table_csv, summary.table_parquet = write_cohort_table(summary.results, out_dir)
    return summary
