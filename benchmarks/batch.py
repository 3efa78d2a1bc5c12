"""Cohort throughput: Dask LocalCluster with 1 vs 2 workers, and the Dask path's overhead vs a plain loop.

Cohort: phantom CT studies with their labelmaps (measure-only pipeline, the same work per study).
Prints studies/min for each configuration and the overhead ratio; ``--json`` prints one object with
``studies_per_minute_1_worker``, ``studies_per_minute_2_workers``, ``dask_overhead_percent_one_study``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("RadAISegment", "RadAIVolumetrics")]

from RadAISegmentLib.io import write_image  # noqa: E402
from RadAISegmentLib.phantoms import abdominal_ct_phantom  # noqa: E402
from RadAIVolumetricsLib.batch.pipeline import process_study  # noqa: E402
from RadAIVolumetricsLib.batch.runner import run_batch, start_local_client  # noqa: E402
from RadAIVolumetricsLib.batch.studies import discover_studies  # noqa: E402


def make_cohort(root: Path, studies: int) -> None:
    for index in range(studies):
        ct, labels, _ = abdominal_ct_phantom(shape_ijk=(128, 128, 64), seed=index)
        write_image(ct, root / f"study{index:02d}" / "ct.nii.gz")
        write_image(labels, root / f"study{index:02d}" / "seg.nii.gz")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_cohort(root / "cohort", args.studies)
        study = discover_studies(root / "cohort")[0]
        process_study(study, str(root / "warm-up"), {"measure": True})      # imports and caches warmed up
        started = time.perf_counter()
        process_study(study, str(root / "plain"), {"measure": True})
        plain_seconds = time.perf_counter() - started
        rates = {}
        for workers in (1, 2):
            client = start_local_client(workers)
            try:
                started = time.perf_counter()
                summary = run_batch(root / "cohort", root / f"out{workers}", client=client)
                rates[workers] = 60.0 * summary.done / (time.perf_counter() - started)
                if workers == 1:
                    single = root / "single"
                    (single / study.name).mkdir(parents=True)
                    for file in (root / "cohort" / study.name).iterdir():
                        (single / study.name / file.name).write_bytes(file.read_bytes())
                    run_batch(single, root / "single_warm", client=client)     # workers warmed up
                    started = time.perf_counter()
                    run_batch(single, root / "single_out", client=client)
                    dask_seconds = time.perf_counter() - started
            finally:
                cluster = client.cluster
                client.close()
                cluster.close()
    result = {"studies": args.studies, "studies_per_minute_1_worker": rates[1], "studies_per_minute_2_workers": rates[2],
              "speedup_2_vs_1_workers": rates[2] / rates[1], "plain_loop_seconds_one_study": plain_seconds,
              "dask_seconds_one_study": dask_seconds,
              "dask_overhead_percent_one_study": 100.0 * (dask_seconds - plain_seconds) / plain_seconds}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34s} {value:.3f}" if isinstance(value, float) else f"{key:34s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
