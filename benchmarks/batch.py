"""Cohort throughput on Dask (LocalCluster, 1 vs 2 workers) and the Dask path's overhead vs a plain loop.

Cohort: the bundled real tumour cases (lung CT, brain MR, breast MR), each a study of a CSV manifest
with a seed at its tumour, processed as ``radai batch --model lesion-roi --measure --explain`` does:
segment from the seed, measure, Grad-CAM, outputs written atomically. Repeated to ``--studies``.

The overhead is measured on one study with warm caches on both sides (imports, the model loaded
once per worker): a plain ``process_study`` call in this process vs ``run_batch`` of a one-study
manifest on a warm one-worker LocalCluster (scheduling, pickling, result transfer, cohort table).
The same overhead is then measured on a full-size study (brain extraction of the Colin27 head MR), where
Dask's fixed cost per study (~30 ms: scheduling, result transfer, cohort table) is a small fraction.
Prints studies/min for each configuration and the ratios; ``--json`` prints one object with
``studies_per_minute_1_worker``, ``studies_per_minute_2_workers``, ``dask_overhead_percent_one_study``.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("RadAISegment", "RadAIVolumetrics")]

import numpy as np  # noqa: E402

from RadAISegmentLib.io import read_labelmap  # noqa: E402
from RadAISegmentLib.sample_data import sample_case  # noqa: E402
from RadAIVolumetricsLib.batch.pipeline import model_settings, process_study  # noqa: E402
from RadAIVolumetricsLib.batch.runner import run_batch, start_local_client  # noqa: E402
from RadAIVolumetricsLib.batch.studies import discover_studies  # noqa: E402

CASES = ("lung-tumour", "brain-tumour", "breast-lesion")
MODEL = "lesion-roi"


def tumour_seed_ras(case: str) -> str:
    """``"R,A,S"`` (mm) of the reference tumour's centroid: where a reader would click."""
    labels = read_labelmap(sample_case(case)["labels"])
    centroid_ijk = np.argwhere(labels.array > 0).mean(axis=0)[::-1]
    return ",".join(f"{v:.2f}" for v in labels.index_to_ras(centroid_ijk))


def write_manifest(path: Path, studies: int) -> Path:
    seeds = {case: tumour_seed_ras(case) for case in CASES}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study", "image", "seed_ras"])
        for index in range(studies):
            case = CASES[index % len(CASES)]
            writer.writerow([f"{case}-{index:02d}", str(sample_case(case)["image"]), seeds[case]])
    return path


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def one_study_overhead(root: Path, client, repeats: int) -> tuple[float, float]:
    """Median seconds of one study: plain ``process_study`` here vs ``run_batch`` on the warm cluster."""
    import os
    from RadAISegmentLib.device import THREADS_ENV
    os.environ[THREADS_ENV] = str(next(iter(client.run(_torch_threads).values())))   # same threads as the worker
    manifest = write_manifest(root / "single.csv", 1)
    study = discover_studies(manifest)[0]
    settings = {**model_settings(MODEL), "measure": True, "explain": True, "device": "cpu", "fast": False}
    process_study(study, str(root / "plain-warm"), settings)                    # model cached in this process
    run_batch(manifest, root / "dask-warm", model_id=MODEL, explain=True, device="cpu", client=client)
    plain, dask = [], []
    for repeat in range(repeats):                                               # interleaved: same machine state
        started = time.perf_counter()
        result = process_study(study, str(root / f"plain-{repeat}"), settings)
        plain.append(time.perf_counter() - started)
        assert result["status"] == "done", result
        started = time.perf_counter()
        summary = run_batch(manifest, root / f"dask-{repeat}", model_id=MODEL, explain=True, device="cpu",
                            client=client)
        dask.append(time.perf_counter() - started)
        assert summary.done == 1, summary
    return statistics.median(plain), statistics.median(dask)


COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")     # Debian mricron-data (installed by .ci/setup)


def brain_study_overhead(root: Path, client, repeats: int) -> tuple[float, float]:
    """The same comparison on a full-size study: brain extraction (deepbet networks) and measurement of the
    Colin27 head MR (1 mm, 181 x 217 x 181)."""
    manifest = root / "brain.csv"
    manifest.write_text(f"study,image\ncolin27,{COLIN27}\n")
    study = discover_studies(manifest)[0]
    settings = {**model_settings("brain-extraction"), "measure": True, "explain": False, "device": "cpu",
                "fast": False}
    process_study(study, str(root / "brain-plain-warm"), settings)
    run_batch(manifest, root / "brain-dask-warm", model_id="brain-extraction", device="cpu", client=client)
    plain, dask = [], []
    for repeat in range(repeats):
        started = time.perf_counter()
        assert process_study(study, str(root / f"brain-plain-{repeat}"), settings)["status"] == "done"
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert run_batch(manifest, root / f"brain-dask-{repeat}", model_id="brain-extraction", device="cpu",
                         client=client).done == 1
        dask.append(time.perf_counter() - started)
    return statistics.median(plain), statistics.median(dask)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=5, help="one-study timings (median reported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = write_manifest(root / "cohort.csv", args.studies)
        rates, seconds = {}, {}
        for workers in (1, 2):
            client = start_local_client(workers)
            try:
                client.run(lambda: None)
                run_batch(write_manifest(root / f"warm{workers}.csv", workers), root / f"warm{workers}",
                          model_id=MODEL, explain=True, device="cpu", client=client)   # each worker loads the model
                started = time.perf_counter()
                summary = run_batch(manifest, root / f"out{workers}", model_id=MODEL, explain=True, device="cpu",
                                    client=client)
                elapsed = time.perf_counter() - started
                if summary.failed:
                    raise SystemExit(f"{summary.failed} studies failed; see {root / f'out{workers}'}")
                rates[workers] = 60.0 * summary.done / elapsed
                if workers == 1:
                    seconds["plain"], seconds["dask"] = one_study_overhead(root, client, args.repeats)
                    if COLIN27.is_file():
                        seconds["brain_plain"], seconds["brain_dask"] = brain_study_overhead(root, client, 3)
            finally:
                cluster = client.cluster
                client.close()
                cluster.close()
    result = {"studies": args.studies, "pipeline": f"{MODEL} from a seed + measure + Grad-CAM, real cases",
              "studies_per_minute_1_worker": rates[1], "studies_per_minute_2_workers": rates[2],
              "speedup_2_vs_1_workers": rates[2] / rates[1],
              "plain_loop_seconds_one_study": seconds["plain"], "dask_seconds_one_study": seconds["dask"],
              "dask_overhead_percent_one_study": 100.0 * (seconds["dask"] - seconds["plain"]) / seconds["plain"]}
    if "brain_plain" in seconds:
        result.update({"brain_extraction_plain_seconds": seconds["brain_plain"],
                       "brain_extraction_dask_seconds": seconds["brain_dask"],
                       "dask_overhead_percent_brain_extraction_study":
                           100.0 * (seconds["brain_dask"] - seconds["brain_plain"]) / seconds["brain_plain"]})
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34s} {value:.3f}" if isinstance(value, float) else f"{key:34s} {value}")
        for key in ("dask_overhead_percent_one_study", "dask_overhead_percent_brain_extraction_study"):
            if key in result:
                print(f"target: {key} < 10 % -> {'met' if result[key] < 10 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
