"""One correction click in Slicer, end to end, against the engine's whole-image call in the same run.

Case: the bundled real chest CT around lung1's tumour (``Resources/SampleData/lung-tumour_context.nrrd``, the whole
512×512×48 chest when present, else the 128×128×48 crop), the documented prompt (seed at the reference's
centroid, box 1.5 × extent + 10 mm). RadAI Segment's Logic runs on the headless Slicer core with its persistent
worker process, as the panel does: *Apply* once (worker start, image sent once), then ``--clicks`` include /
exclude clicks around the seed, each timed from placing the point to its segment updated in place:

* ``slicer_seconds_per_click``: ``startCorrection`` (route the click, read the lesion's own extent, send the
  prompt and outline) + the worker (the sub-image its crop needs) + ``finishCorrection`` (undo state saved,
  segment replaced in place);
  (``of_which_in_the_worker``: the worker's own time for the request, the rest is the Slicer side and the pipe);
* the peer, ``engine_whole_image_seconds_per_click``: ``segment_prompts`` on the whole image with the whole
  previous labelmap, model loaded and warm, in this process (what a per-click call of the engine costs without
  the worker's sub-image); ratio printed.

The first click is reported on its own (it also warms up the refine path in both processes); medians over the
clicks after it. Target: < 1 s per click on 2 CPU cores. Needs a lesion model with clicks
(lesion-roi 2.x): the shipped one, or ``--model DIR``.

    python benchmarks/slicer_clicks.py [--model DIR] [--clicks 6] [--pad-to 48,512,512] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))
sys.path.insert(0, str(ROOT / "Testing"))           # the headless Slicer core set-up of the tests


def load_case():
    import numpy as np
    from RadAISegmentLib.io import read_image, read_labelmap
    from RadAISegmentLib.lesion.evaluate import case_prompt
    from RadAISegmentLib.sample_data import sample_case, sample_data_dir
    paths = sample_case("lung-tumour")
    labels = read_labelmap(paths["labels"])
    context = sample_data_dir() / "lung-tumour_context.nrrd"
    image = read_image(context if context.exists() else paths["image"])
    seed, box_mm, _ = case_prompt(labels)
    return image, tuple(float(v) for v in np.asarray(seed)), float(box_mm)


def padded(image, shape_kji):
    """``image`` inside a larger grid of ``shape_kji`` voxels (air, -1000 HU; the case stays where it is in space,
    centred in-plane): the cost of a click on a CT-sized volume."""
    import numpy as np
    shape = [max(a, b) for a, b in zip(shape_kji, image.array.shape)]
    array = np.full(shape, -1000, image.array.dtype)
    start = [(a - b) // 2 for a, b in zip(shape, image.array.shape)]
    array[tuple(slice(s, s + n) for s, n in zip(start, image.array.shape))] = image.array
    origin = image.index_to_lps(-np.asarray(start[::-1], float))
    return type(image)(array, image.spacing_mm, tuple(origin), image.direction_lps, image.metadata)


def click_positions(seed, box_mm: float, count: int) -> list[tuple[tuple, bool]]:
    """Alternating include / exclude clicks at a quarter of the box from the seed, along ±R, ±A, ±S."""
    step = box_mm / 4.0
    offsets = [(step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0), (0, 0, step), (0, 0, -step)]
    return [(tuple(s + o for s, o in zip(seed, offsets[n % 6])), n % 2 == 0) for n in range(count)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="lesion model folder with clicks (lesion-roi 2.x); default: the shipped one")
    parser.add_argument("--clicks", type=int, default=6)
    parser.add_argument("--pad-to", help="K,J,I: embed the case in a larger grid of air, e.g. 48,512,512 (a CT slab)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    models = Path(tempfile.mkdtemp(prefix="radai-bench-clicks-"))
    source = Path(args.model) if args.model else ROOT / "Resources" / "Models" / "lesion-roi"
    model_id = json.loads((source / "card.json").read_text())["id"]
    shutil.copytree(source, models / model_id, ignore=shutil.ignore_patterns("training"))
    os.environ["RADAI_MODELS_DIR"] = str(models)
    try:
        return run(model_id, args)
    finally:
        from RadAISegmentLib.worker_client import stop_shared_workers
        stop_shared_workers()
        shutil.rmtree(models, ignore_errors=True)


def run(model_id: str, args) -> int:
    from slicer_harness import load_module_file, start_headless_slicer
    slicer = start_headless_slicer()
    from RadAISegmentLib.inference import load_model
    from RadAISegmentLib.lesion.predict import prompt_settings, segment_prompts
    from RadAISegmentLib.lesion_session import prompt_from_dict
    from RadAISegmentLib.lesion_slicer import read_session
    from RadAISegmentLib.mrml import labelmap_from_segmentation_node, volume_node_from_image
    model = load_model(model_id, "cpu")
    if not prompt_settings(model).interactive:
        print(f"Model '{model_id}' ({model.card.version}) takes no clicks; pass a lesion-roi 2.x folder with --model.",
              file=sys.stderr)
        return 2
    image, seed, box_mm = load_case()
    if args.pad_to:
        image = padded(image, [int(v) for v in args.pad_to.split(",")])
    code = load_module_file("RadAISegment/RadAISegment.py", "_radai_segment_click_benchmark")
    logic = code.RadAISegmentLogic()
    scene = slicer.mrmlScene
    volume = volume_node_from_image(image, "chest CT", scene)
    parameters = logic.getParameterNode()
    seeds = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    seeds.AddControlPointWorld(*seed)
    parameters.inputVolume, parameters.seedPoints, parameters.modelId = volume, seeds, model_id
    parameters.device, parameters.boxSizeMm = "cpu", box_mm
    started = time.perf_counter()
    job = logic.startSegmentation(parameters)
    job.wait()
    node = logic.finishSegmentation(job)
    apply_seconds = time.perf_counter() - started
    lists = {True: scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "include"),
             False: scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "exclude")}
    slicer_seconds, worker_seconds, engine_seconds, skipped = [], [], [], []
    for point, include in click_positions(seed, box_mm, args.clicks):
        previous = labelmap_from_segmentation_node(node, image)           # the peer's input, not timed
        markups = lists[include]
        started = time.perf_counter()
        markups.AddControlPointWorld(*point)
        try:
            job = logic.startCorrection(node, markups, markups.GetNumberOfControlPoints() - 1, include)
            job.wait()
            logic.finishCorrection(job)
        except Exception as error:  # noqa: BLE001 - a click the engine refuses is reported, not timed
            skipped.append(f"{point}: {error}")
            continue
        slicer_seconds.append(time.perf_counter() - started)
        worker_seconds.append(job.worker_seconds)
        prompt = prompt_from_dict(read_session(node).record(1).prompt)   # the prompt the click just ran with
        started = time.perf_counter()
        segment_prompts(image, [prompt], model, "cpu", previous=previous)
        engine_seconds.append(time.perf_counter() - started)
    if not slicer_seconds:
        print("No click could be timed:\n" + "\n".join(skipped), file=sys.stderr)
        return 1
    first = {"first_click_seconds": round(slicer_seconds[0], 3),
             "first_click_engine_whole_image_seconds": round(engine_seconds[0], 3)}
    if len(slicer_seconds) > 1:                  # the first click of a session also warms the refine path up
        slicer_seconds, worker_seconds, engine_seconds = slicer_seconds[1:], worker_seconds[1:], engine_seconds[1:]
    report = {"image_shape_kji": list(image.array.shape), "model": f"{model_id} {model.card.version}",
              "apply_seconds_with_worker_start": round(apply_seconds, 3), **first, "clicks": len(slicer_seconds),
              "slicer_seconds_per_click": round(statistics.median(slicer_seconds), 3),
              "slicer_seconds_per_click_max": round(max(slicer_seconds), 3),
              "of_which_in_the_worker": round(statistics.median(worker_seconds), 3),
              "engine_whole_image_seconds_per_click": round(statistics.median(engine_seconds), 3),
              "engine_over_slicer_ratio": round(statistics.median(engine_seconds) / statistics.median(slicer_seconds), 2),
              "cpu_threads": os.cpu_count(), "skipped": skipped}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:40s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
