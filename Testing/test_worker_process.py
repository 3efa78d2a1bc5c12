"""RadAI's worker process (``RadAISegmentLib.worker``) and its jobs, without Slicer: the worker runs the
engine exactly as in-process, stays alive between requests with the model and the last image loaded,
streams progress, turns its failures into typed errors, and Cancel leaves nothing behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import sys
from pathlib import Path

import numpy as np
import pytest

from RadAISegmentLib.errors import CancelledError, ModelError
from RadAISegmentLib.jobs import JobInputs, WorkerJob
from RadAISegmentLib.worker_client import WorkerError, WorkerProcess
from job_recording import record_progress
from test_inference import oblique_ct
from test_models_cache import make_model_folder

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker-models")
    make_model_folder(folder / "tiny-unet")
    return folder


@pytest.fixture(scope="module")
def worker():
    process = WorkerProcess(sys.executable)
    yield process
    process.stop()


def _job(worker, models_dir, image, key, stages=("segment",), model="tiny-unet"):
    inputs = JobInputs(key, model, device="cpu", stages=stages)
    return WorkerJob(worker, inputs, image, models_env={"RADAI_MODELS_DIR": str(models_dir)})


def test_worker_output_equals_the_engine_in_process(worker, models_dir, monkeypatch):
    """Labels bit for bit and the Grad-CAM map to float precision, on the input grid; progress streamed."""
    monkeypatch.setenv("RADAI_MODELS_DIR", str(models_dir))
    from RadAISegmentLib.inference import run_model
    from RadAISegmentLib.saliency import explain_image
    image = oblique_ct((24, 48, 44))
    job = _job(worker, models_dir, image, "oblique-1", stages=("segment", "explain"))
    fractions = record_progress(job)
    while not job.poll():
        time.sleep(0.02)
    result = job.result()
    expected = run_model(image, "tiny-unet", device="cpu")
    assert result.labelmap.same_grid(image)
    np.testing.assert_array_equal(result.labelmap.array, expected.array)
    assert [s.name for s in result.labelmap.segments] == [s.name for s in expected.segments]
    saliency = explain_image(image, "tiny-unet")
    assert result.saliency.same_grid(image)
    np.testing.assert_allclose(result.saliency.array, saliency.map.array, atol=1e-6)
    assert result.saliency_metadata["model_id"] == "tiny-unet"
    assert any(0.0 < f < 0.8 for f in fractions) and any(0.8 <= f < 1.0 for f in fractions), sorted(set(fractions))
    assert job.fraction == 1.0 and job.message == "done"
    job.cleanup()
    assert not job.folder.exists()


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_the_panel_s_runtime_choice_reaches_the_engine(worker, models_dir, runtime):
    """The Slicer panel's CPU runtime goes with the request; the result says which runtime ran."""
    inputs = JobInputs(f"runtime-{runtime}", "tiny-unet", device="cpu", runtime=runtime)
    job = WorkerJob(worker, inputs, oblique_ct((16, 24, 20)), models_env={"RADAI_MODELS_DIR": str(models_dir)})
    while not job.poll():
        time.sleep(0.02)
    ran = job.result().inference_precision
    assert ("OpenVINO" in ran) == (runtime == "openvino"), ran
    job.cleanup()


def test_persistent_worker_keeps_the_image_and_the_process(worker, models_dir):
    image = oblique_ct((20, 40, 40), seed=2)
    first = _job(worker, models_dir, image, "oblique-2")
    assert first.wait(120) and (first.folder / "input.nrrd").is_file()      # the image was sent once
    pid = worker.process.pid
    labels = first.result().labelmap.array
    second = _job(worker, models_dir, None, "oblique-2")                       # no image: the worker holds it
    assert not (second.folder / "input.nrrd").exists()
    assert second.wait(120)
    np.testing.assert_array_equal(second.result().labelmap.array, labels)
    assert worker.process.pid == pid and worker.image_key == "oblique-2"
    with pytest.raises(ValueError, match="pass it to the job"):
        _job(worker, models_dir, None, "never-sent")
    for job in (first, second):
        job.cleanup()


def test_worker_errors_arrive_as_the_engine_s_typed_errors(worker, models_dir):
    job = _job(worker, models_dir, oblique_ct((12, 20, 20)), "oblique-3", model="no-such-model")
    assert job.wait(120)
    with pytest.raises(ModelError, match="no-such-model") as raised:
        job.result()
    assert any("Worker traceback" in note for note in raised.value.__notes__)
    assert worker.running                                   # an engine error does not end the worker
    job.cleanup()


def test_cancel_kills_the_worker_and_leaves_nothing(worker, models_dir):
    job = _job(worker, models_dir, oblique_ct((40, 90, 90), seed=4), "oblique-4", stages=("segment", "explain"))
    pid, folder = worker.process.pid, job.folder
    job.cancel()
    assert not worker.running and not folder.exists()
    with pytest.raises(OSError):
        os.kill(pid, 0)                                      # the process is gone, not orphaned
    with pytest.raises(CancelledError):
        job.result()
    after = _job(worker, models_dir, oblique_ct((12, 20, 20)), "oblique-5")   # the next job starts a new worker
    assert after.wait(120) and after.result().labelmap is not None and worker.process.pid != pid
    after.cleanup()


def test_a_killed_worker_is_a_clear_error_naming_memory(models_dir):
    """What the out-of-memory killer does: SIGKILL mid-job."""
    process = WorkerProcess(sys.executable)
    job = _job(process, models_dir, oblique_ct((12, 20, 20)), "oblique-6")
    os.kill(process.process.pid, signal.SIGKILL)
    assert job.wait(60)
    with pytest.raises(WorkerError, match="killed .*out of memory"):
        job.result()
    job.cleanup()


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path, models_dir):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no module named torch' >&2\nexit 3\n")
    broken.chmod(0o755)
    folders_before = set(Path(tempfile.gettempdir()).glob("radai-job-*"))
    with pytest.raises(WorkerError, match="exited with code 3(.|\n)*no module named torch"):
        job = _job(WorkerProcess(str(broken)), models_dir, oblique_ct((12, 20, 20)), "oblique-7")  # may fail here
        assert job.wait(30)
        job.cleanup()
        job.result()                                                                       # or here
    assert set(Path(tempfile.gettempdir()).glob("radai-job-*")) <= folders_before


def test_protocol_stream_keeps_stray_output_off_the_protocol():
    code = ("import os, sys; from RadAISegmentLib.worker import protocol_stream; p = protocol_stream(); "
            "print('python noise'); os.write(1, b'C noise\\n'); p.write('{\"event\": \"x\"}\\n'); p.flush()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"event": "x"}]
    assert "python noise" in done.stderr and "C noise" in done.stderr
