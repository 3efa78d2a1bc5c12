"""Cohort batch on a 2-worker LocalCluster on loopback: good studies done, a corrupt one reported,
a second run skips everything, and a run that loses a worker mid-way still completes correctly."""
from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest

from RadAISegmentLib.io import write_image
from RadAISegmentLib.phantoms import abdominal_ct_phantom
from RadAIVolumetricsLib.batch.runner import run_batch


@pytest.fixture(scope="module")
def dask_client():
    from RadAIVolumetricsLib.batch.runner import start_local_client
    client = start_local_client(workers=2)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


def make_cohort(root, sample_data, n_phantoms=3):
    """Bundled real CT with its labels, phantoms (analytic volumes), and one truncated (corrupt) image."""
    truths = {}
    (root / "abdomen").mkdir(parents=True)
    shutil.copy(sample_data / "abdomen-ct_image.nii.gz", root / "abdomen" / "ct.nii.gz")
    shutil.copy(sample_data / "abdomen-ct_labels.nii.gz", root / "abdomen" / "seg.nii.gz")
    for index in range(n_phantoms):
        ct, labels, truth = abdominal_ct_phantom(shape_ijk=(64, 64, 32), spacing_mm=(3.0, 3.0, 6.0), seed=index)
        folder = root / f"phantom{index}"
        folder.mkdir()
        write_image(ct, folder / "ct.nii.gz")
        write_image(labels, folder / "seg.nii.gz")
        truths[folder.name] = truth
    (root / "corrupt").mkdir()
    data = (sample_data / "abdomen-ct_image.nii.gz").read_bytes()
    (root / "corrupt" / "ct.nii.gz").write_bytes(data[: len(data) // 3])
    return truths


def volumes_by_study(table_path):
    table = pq.read_table(table_path).to_pylist()
    return {(row["study"], row["label"]): row["volume_ml"] for row in table if row["status"] == "done"}


def test_cohort_done_failed_then_skipped(tmp_path, sample_data, dask_client):
    truths = make_cohort(tmp_path / "cohort", sample_data)
    first = run_batch(tmp_path / "cohort", tmp_path / "out", client=dask_client)
    assert (first.done, first.failed, first.skipped) == (4, 1, 0)
    failed = [r for r in first.results if r["status"] == "failed"]
    assert failed[0]["study"] == "corrupt" and "ct.nii.gz" in failed[0]["error"]
    assert not (tmp_path / "out" / "corrupt").exists()          # nothing half-written for the failed study
    volumes = volumes_by_study(first.table_parquet)
    for study, truth in truths.items():
        for label, facts in truth["labels"].items():
            expected_ml = facts["voxel_volume_mm3"] / 1000.0   # voxel count x voxel size, from the phantom
            assert volumes[(study, float(label))] == pytest.approx(expected_ml)
    record = json.loads((tmp_path / "out" / "phantom0" / "study.json").read_text())
    assert record["status"] == "done" and len(record["fingerprint"]) == 64
    second = run_batch(tmp_path / "cohort", tmp_path / "out", client=dask_client)
    assert (second.done, second.skipped, second.failed) == (0, 4, 1)
    assert volumes_by_study(second.table_parquet) == volumes
    # Changing an input's bytes makes that study (only) run again.
    labels = abdominal_ct_phantom(shape_ijk=(64, 64, 32), spacing_mm=(3.0, 3.0, 6.0), seed=1)[1]
    write_image(labels.with_array(np.where(labels.array == 2, 0, labels.array)),   # spleen label removed
                tmp_path / "cohort" / "phantom1" / "seg.nii.gz")
    third = run_batch(tmp_path / "cohort", tmp_path / "out", client=dask_client)
    assert (third.done, third.skipped) == (1, 3)


def test_lost_worker_tasks_are_retried(tmp_path, sample_data, dask_client):
    make_cohort(tmp_path / "cohort", sample_data, n_phantoms=6)
    shutil.rmtree(tmp_path / "cohort" / "corrupt")
    reference = run_batch(tmp_path / "cohort", tmp_path / "reference_out", client=dask_client)
    pids = dask_client.run(os.getpid)
    killed = []

    def kill_a_busy_worker(result):
        if not killed:
            victim = next(pid for pid in pids.values() if pid != result["worker_pid"])
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    survived = run_batch(tmp_path / "cohort", tmp_path / "out", client=dask_client, on_result=kill_a_busy_worker)
    assert killed
    assert survived.done == 7 and survived.failed == 0
    assert volumes_by_study(survived.table_parquet) == volumes_by_study(reference.table_parquet)
    for study in ("abdomen", *(f"phantom{i}" for i in range(6))):
        assert (tmp_path / "out" / study / "study.json").exists()
    dask_client.wait_for_workers(2, timeout=60)


def _model_loads_in_this_process():
    from RadAISegmentLib.inference import _cached_model
    return _cached_model.cache_info().misses


def test_model_is_loaded_once_per_worker_not_per_study(tmp_path, sample_data, dask_client):
    """Four lesion studies with seeds on 2 workers: each worker process loads lesion-roi at most once."""
    from RadAISegmentLib.io import read_labelmap
    from RadAISegmentLib.lesion.evaluate import case_prompt
    reference = read_labelmap(sample_data / "lung-tumour_labels.nrrd")
    seed = ",".join(f"{v:.2f}" for v in case_prompt(reference)[0])
    dask_client.restart()                                     # fresh worker processes: empty model caches
    rows = ["study,image,seed_ras"] + [f"lung{i},{sample_data / 'lung-tumour_image.nrrd'},\"{seed}\"" for i in range(4)]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    summary = run_batch(tmp_path / "manifest.csv", tmp_path / "out", model_id="lesion-roi", client=dask_client)
    assert summary.done == 4, [r["error"] for r in summary.results]
    loads = dask_client.run(_model_loads_in_this_process)
    assert sum(loads.values()) <= len(loads) and max(loads.values()) <= 1
    volumes = {row["volume_ml"] for result in summary.results for row in result["rows"]}
    assert len(volumes) == 1 and volumes.pop() > 0            # same lesion, same answer on every worker


def _torch_threads_in_this_process():
    import torch
    return torch.get_num_threads()


def test_workers_share_the_cores_without_oversubscription(tmp_path, sample_data, dask_client):
    """After inference on every worker, workers x torch threads = the machine's cores (never more):
    ``choose_device`` honours the per-worker thread budget the runner sets (RADAI_TORCH_THREADS)."""
    from RadAISegmentLib.io import read_labelmap
    from RadAISegmentLib.lesion.evaluate import case_prompt
    reference = read_labelmap(sample_data / "lung-tumour_labels.nrrd")
    seed = ",".join(f"{v:.2f}" for v in case_prompt(reference)[0])
    rows = ["study,image,seed_ras"] + [f"lung{i},{sample_data / 'lung-tumour_image.nrrd'},\"{seed}\"" for i in range(4)]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    summary = run_batch(tmp_path / "manifest.csv", tmp_path / "out", model_id="lesion-roi", client=dask_client)
    assert summary.done == 4
    threads = dask_client.run(_torch_threads_in_this_process)
    assert len(threads) == 2
    assert all(count == max(1, (os.cpu_count() or 1) // 2) for count in threads.values())
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 halves this pipeline's speed in a worker: not set here
    malloc = dask_client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(malloc.values()) == {None}


def _wait_for(path, seconds=120):
    import time
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


@pytest.fixture()
def loopback_scheduler(tmp_path):
    """A real Dask scheduler and one worker process, started with Dask's own CLI on 127.0.0.1 (as on a
    cluster); yields the scheduler's tcp:// address."""
    import subprocess
    import sys
    from pathlib import Path
    dask_cli = str(Path(sys.executable).parent / "dask")
    scheduler_file = tmp_path / "scheduler.json"
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker")}
    processes = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], stdout=logs["scheduler"], stderr=subprocess.STDOUT)]
    try:
        _wait_for(scheduler_file)
        processes.append(subprocess.Popen([dask_cli, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard", "--name", "radai-loopback-worker",
                                           "--local-directory", str(tmp_path / "worker")],
                                          stdout=logs["worker"], stderr=subprocess.STDOUT))
        from distributed import Client
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:               # a worker busy shutting down: stop it for good
                process.kill()
                process.wait(timeout=30)
        for handle in logs.values():
            handle.close()


def test_cli_batch_on_an_existing_scheduler_with_explain(tmp_path, sample_data, loopback_scheduler):
    """`radai batch MANIFEST --model lesion-roi --explain --scheduler tcp://...` as a user types it: the studies
    run on that cluster's worker (the scheduler saw them finish), each study gets a segmentation, measurements
    and a saliency map equal to `explain_image` on the same prompt, on the image's grid."""
    import subprocess
    import sys
    from pathlib import Path
    from distributed import Client
    from RadAISegmentLib.io import read_image, read_labelmap
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.saliency import explain_image
    image_path = sample_data / "lung-tumour_image.nrrd"
    seed = case_prompt(read_labelmap(sample_data / "lung-tumour_labels.nrrd"))[0]
    seed_text = ",".join(f"{v:.2f}" for v in seed)
    rows = ["study,image,seed_ras"] + [f"lung{i},{image_path},\"{seed_text}\"" for i in range(2)]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    radai = str(Path(sys.executable).parent / "radai")
    run = subprocess.run([radai, "batch", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"),
                          "--model", "lesion-roi", "--explain", "--scheduler", loopback_scheduler],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    with Client(loopback_scheduler, timeout=60) as client:
        # a lambda travels by value (the scheduler process cannot import this test module)
        finished = client.run_on_scheduler(lambda dask_scheduler: sorted(
            {str(entry[0]) for entry in dask_scheduler.transition_log
             if str(entry[0]).startswith("radai-study-") and entry[2] == "memory"}))
        assert finished == ["radai-study-lung0-0", "radai-study-lung1-1"]
    image = read_image(image_path)
    expected = explain_image(image, "lesion-roi", seed_ras=tuple(float(v) for v in seed_text.split(",")))
    for study in ("lung0", "lung1"):
        folder = tmp_path / "out" / study
        assert json.loads((folder / "study.json").read_text())["settings"]["explain"] is True
        segments = json.loads((folder / "measurements.json").read_text())["segments"]
        assert segments and segments[0]["volume_ml"] > 0
        saliency = read_image(folder / "saliency.nii.gz")
        assert saliency.same_grid(image, tolerance=1e-4)
        np.testing.assert_allclose(saliency.array, expected.map.array, atol=1e-6)
        assert json.loads((folder / "saliency.json").read_text())["method"] == expected.metadata["method"]
    # nothing listens on port 9: a one-line typed error naming the address (connect timeout shortened to 3 s)
    refused = subprocess.run([radai, "batch", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out2"),
                              "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "Cannot reach the Dask scheduler at tcp://127.0.0.1:9" in refused.stderr
    assert not (tmp_path / "out2" / "lung0").exists()
