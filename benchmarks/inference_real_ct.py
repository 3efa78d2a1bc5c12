"""Benchmark on a real CT: RadAI vs MONAI's own ``wholeBody_ct_segmentation`` bundle pipeline, same weights.

Input (default): the PyRadiomics ``lung1`` chest CT (512×512×48, 0.57×0.57×5 mm, BSD-3) from
``../shared/data/pyradiomics-cases`` when present, else the real CT DICOM series bundled for the tests
(``Testing/Data/ct-dicom``: the TotalSegmentator example chest CT, cropped in-plane to 256×208×20), so that a
bare clone runs it; ``--image`` takes any CT file or DICOM folder. Using lung1 as a benchmark *input* is fine:
nothing here evaluates lesion segmentation.

Model: the real bundle config (``Testing/Data/monai-bundle-configs/wholeBody_ct_segmentation``, as published: SegResNet,
105 classes, Orientationd RAS, Spacingd 1.5 mm (3 mm with ``highres`` off), NormalizeIntensityd(nonzero) +
ScaleIntensityd(-1, 1), SlidingWindowInferer 96³ / overlap 0.25 / Gaussian / replicate padding, softmax →
argmax → Invertd(nearest)). The published weights are not reachable here, so the benchmark makes weights of
the same architecture decisive by brief training (``--train-steps``, fp32, Adam, cosine decay, 64³ crops of
this CT at the 1.5 and 3 mm grids) on **pseudo-labels** of the same CT: 1 soft tissue, 2 fat, 3 lung, 4 bone
inside the body (largest component above -500 HU, holes filled; the table and air are background). The
network's Dice against those pseudo-labels is printed: a network that labels them well is decisive, which is
all agreement needs (it claims no anatomy). ``--network-cache DIR`` keeps the trained bundle.

Runs, each in a fresh process (peak RSS = the child's ``VmHWM``), timed from reading the image to labels on
the input grid (imports excluded for both):

* ``monai``: MONAI's bundle pipeline as its ``SupervisedEvaluator`` runs it on a CPU (``ConfigParser`` over
  the real ``inference.json``: ``LoadImaged`` of a NIfTI copy of the CT, its preprocessing, its inferer, its
  postprocessing with ``Invertd``; ``SaveImaged`` left out, fp32 — the bundle's ``amp`` is CUDA-only);
* ``ours``: ``segment_image`` as ``radai segment`` runs it (body crop, ``--precision auto``, ``--runtime auto``,
  which is PyTorch for MONAI bundles);
* ``ours-fp32``: the same with ``--precision fp32`` (``bf16_vs_fp32``: does bfloat16 keep the labels?);
* ``ours-openvino``: the same as ``ours`` through OpenVINO (``--runtime openvino``; ``speedup_openvino_vs_monai``);
* ``ours-nocrop-fp32``: MONAI's window positions, float32 in PyTorch (``nocrop_fp32_vs_monai``: the pipelines
  are equivalent, the image's outermost voxels included — ``edge_voxels_disagreeing``).
OpenVINO's conversion of the network is kept in a models cache (``cpu_runtime``); an unmeasured first child
makes it, as a user's first run would (``openvino_conversion_s``), in the benchmark's own cache folder.

Agreement is multi-label Dice (voxels with equal non-zero label / mean non-zero count), inside the body and
over the whole volume, plus Dice per label. Run heavy: ``flock /work/notes/heavy.lock python
benchmarks/inference_real_ct.py``. ``--json`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"
#: the full-resolution lung1 CT when ../shared holds it; else the real CT DICOM series bundled for the tests
#: (TotalSegmentator example chest CT, cropped; Testing/Data/PROVENANCE.md), so a bare clone runs it too
DEFAULT_CT = next((path for path in (SHARED / "pyradiomics-cases" / "lung1_image.nrrd", ROOT / "Testing" / "Data" / "ct-dicom")
                   if path.exists()), ROOT / "Testing" / "Data" / "ct-dicom")
#: the real bundle config, bundled in the repository (identical to the published one, Testing/Data/PROVENANCE.md)
BUNDLE_CONFIG = ROOT / "Testing" / "Data" / "monai-bundle-configs" / "wholeBody_ct_segmentation"
PSEUDO_LABELS = {1: "soft tissue", 2: "fat", 3: "lung", 4: "bone"}
KINDS = ("monai", "ours", "ours-fp32", "ours-openvino", "ours-nocrop-fp32")


def pseudo_labels(array_kji: np.ndarray) -> np.ndarray:
    """Tissue classes by HU inside the body (see the module docstring), ``[k, j, i]`` uint8."""
    from scipy import ndimage
    body = ndimage.binary_opening(array_kji > -500, structure=np.ones((1, 5, 5)))
    components, count = ndimage.label(body)
    if count:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        body = components == int(np.argmax(sizes))
    body = np.stack([ndimage.binary_fill_holes(plane) for plane in body])
    labels = np.zeros(array_kji.shape, np.uint8)
    labels[body & (array_kji >= -30)] = 1
    labels[body & (array_kji >= -190) & (array_kji < -30)] = 2
    labels[body & (array_kji < -400)] = 3
    labels[body & (array_kji >= 200)] = 4
    return labels


def _labels_on_grid(labels, image, grid) -> np.ndarray:
    """Nearest-neighbour labels ``[X, Y, Z]`` on the model grid (training targets)."""
    from RadAISegmentLib.grid_resample import grid_axes
    axes = grid_axes(image, *grid)
    index = [np.clip(np.round(p), 0, image.shape_ijk[a] - 1).astype(np.intp)
             for p, a in zip(axes.positions, axes.input_axis)]
    ijk = labels.transpose(2, 1, 0)
    by_input = [index[axes.input_axis.index(p)] for p in range(3)]
    return np.ascontiguousarray(ijk[np.ix_(*by_input)].transpose(axes.input_axis))


def _training_volumes(folder: Path, image_path: Path) -> list:
    """(normalised CT, pseudo-labels) on the 1.5 mm and 3 mm model grids, as RadAI reads the bundle."""
    import torch
    from RadAISegmentLib.grid_resample import grid_axes, image_to_model_grid
    from RadAISegmentLib.inference import model_grid, normalise
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.models.loaders import load_model_folder
    spec = load_model_folder(folder)
    image = read_image(image_path)
    labels = pseudo_labels(np.asarray(image.array))
    volumes = []
    for fast in (False, True):
        grid = model_grid(image, spec, fast)
        x = normalise(torch.from_numpy(image_to_model_grid(image, grid_axes(image, *grid)))[None], spec.normalisation)
        volumes.append((x, torch.from_numpy(_labels_on_grid(labels, image, grid).astype(np.int64))))
    return volumes


def make_bundle(folder: Path, image_path: Path, steps: int, chunk: int | None = None, crop: int = 64) -> bool:
    """The real wholeBody config + SegResNet weights trained on the CT's pseudo-labels (``models/model.pt`` =
    ``models/model_lowres.pt``). Resumable: ``train_state.pt`` keeps network, optimiser, schedule and step, so
    training can run in chunks (``chunk`` steps per call, each its own short heavy job). True when done."""
    import torch
    from monai.networks.nets import SegResNet
    torch.manual_seed(0)
    args = json.loads((BUNDLE_CONFIG / "configs" / "inference.json").read_text())["network_def"]
    network = SegResNet(**{k: v for k, v in args.items() if k != "_target_"})
    optimiser = torch.optim.Adam(network.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps), eta_min=2e-5)
    state_path, first = folder / "train_state.pt", 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        first = int(state["step"])
    else:
        shutil.copytree(BUNDLE_CONFIG / "configs", folder / "configs", dirs_exist_ok=True)
        (folder / "models").mkdir(parents=True, exist_ok=True)
        with torch.no_grad():                              # classes the pseudo-labels never use start off
            network.conv_final[-1].conv.bias[len(PSEUDO_LABELS) + 1:] = -10.0
        torch.save(network.state_dict(), folder / "models" / "model.pt")
    last = steps if chunk is None else min(steps, first + chunk)
    if first < last:
        volumes = _training_volumes(folder, image_path)
        rng = np.random.default_rng(first)
        network.to(memory_format=torch.channels_last_3d).train()
        for step in range(first, last):
            x, y = volumes[step % 2]
            sizes = [min(crop, n // 8 * 8) for n in y.shape]
            corner = [int(rng.integers(0, n - size + 1)) for n, size in zip(y.shape, sizes)]
            window = tuple(slice(c, c + size) for c, size in zip(corner, sizes))
            batch = x[(slice(None),) + window][None].contiguous(memory_format=torch.channels_last_3d)
            loss = torch.nn.functional.cross_entropy(network(batch), y[window][None])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            if step % 10 == 0 or step == last - 1:
                print(f"  benchmark network, step {step + 1}/{steps}: cross-entropy {loss.item():.3f}", file=sys.stderr)
        network.eval().to(memory_format=torch.contiguous_format)
        torch.save({"network": network.state_dict(), "optimiser": optimiser.state_dict(),
                    "schedule": schedule.state_dict(), "step": last}, state_path)
        torch.save(network.state_dict(), folder / "models" / "model.pt")
        shutil.copyfile(folder / "models" / "model.pt", folder / "models" / "model_lowres.pt")
    return last >= steps


def run_monai_bundle(nifti: str, bundle: str, spacing: float) -> np.ndarray:
    """MONAI's own pipeline for the bundle (as its SupervisedEvaluator runs it on a CPU), labels ``[k, j, i]``."""
    import torch
    from monai.bundle import ConfigParser
    from monai.transforms import Compose
    parser = ConfigParser()
    parser.read_config(str(Path(bundle) / "configs" / "inference.json"))
    parser["bundle_root"] = bundle
    parser["device"] = "$torch.device('cpu')"
    parser["inferer#device"] = "$torch.device('cpu')"
    parser["displayable_configs#highres"] = spacing < 2.0
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(Path(bundle) / "models" / parser.get_parsed_content("modelname"),
                                       map_location="cpu", weights_only=True))
    network.eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    inferer = parser.get_parsed_content("inferer")
    postprocessing = parser.get_parsed_content("postprocessing")
    postprocessing = Compose([t for t in postprocessing.transforms if type(t).__name__ != "SaveImaged"])
    data = preprocessing({"image": nifti})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    data = postprocessing(data)
    return np.ascontiguousarray(data["pred"][0].numpy().round().astype(np.uint8).transpose(2, 1, 0))


def child(kind: str, image_path: str, nifti: str, bundle: str, spacing: float, out: str) -> None:
    """One measured run: labels saved to ``out`` (.npy), seconds / peak RSS / precision printed as JSON.
    RadAI's runs set up their process as the ``radai`` command does (huge pages for PyTorch's allocator)."""
    if kind != "monai":
        from RadAISegmentLib.cpu_memory import tune_cpu_memory
        tune_cpu_memory()
    import torch  # noqa: F401 - imported before the clock starts, as MONAI's run imports it
    import monai  # noqa: F401
    from RadAISegmentLib.device import choose_device
    from RadAISegmentLib.inference import segment_image
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.models.loaders import load_model_folder
    from inference import peak_rss_mb
    import resource
    choose_device("cpu")
    start, cpu_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    precision = "fp32"
    if kind == "openvino-conversion":
        from RadAISegmentLib.cpu_runtime import runtime_network
        model = load_model_folder(bundle)
        runtime_network(model.network, choose_device("cpu").with_runtime("openvino"),
                        (model.sw_batch_size, model.in_channels, *model.roi_size))
        print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))
        return
    if kind == "monai":
        labels = run_monai_bundle(nifti, bundle, spacing)
    else:
        image = read_image(image_path)
        model = load_model_folder(bundle)
        labelmap = segment_image(image, model, device="cpu", fast=spacing > 1.5 + 1e-6,
                                 crop_foreground="nocrop" not in kind,
                                 precision="fp32" if kind.endswith("fp32") else "auto",
                                 runtime={"ours-openvino": "openvino", "ours-nocrop-fp32": "torch"}.get(kind, "auto"))
        labels, precision = labelmap.array, labelmap.metadata["inference_precision"]
    seconds, cpu_end = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (cpu_end.ru_utime + cpu_end.ru_stime) - (cpu_start.ru_utime + cpu_start.ru_stime)
    np.save(out, labels.astype(np.uint8))
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_rss_mb(),
                      "precision": precision}))


def measure(kind: str, image_path: Path, nifti: Path, bundle: Path, spacing: float, out: Path) -> dict:
    env = dict(os.environ, RADAI_MODELS_DIR=str(out.parent / "models-cache"))      # OpenVINO's kept conversions
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(image_path), str(nifti), str(bundle),
                           str(spacing), str(out)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} run failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dice(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float | None:
    a, b = a[region], b[region]
    total = np.count_nonzero(a > 0) + np.count_nonzero(b > 0)
    return None if total == 0 else 2.0 * np.count_nonzero((a == b) & (a > 0)) / total


def dice_per_label(a: np.ndarray, b: np.ndarray) -> dict:
    out = {}
    for label in sorted(set(np.unique(a).tolist()) | set(np.unique(b).tolist()) - {0}):
        x, y = a == label, b == label
        out[PSEUDO_LABELS.get(label, f"label {label}")] = 2.0 * np.count_nonzero(x & y) / (x.sum() + y.sum())
    return out


def edge_disagreement(a: np.ndarray, b: np.ndarray) -> int:
    """Voxels of the outermost two rows/columns of every slice where the labels differ."""
    rim = np.zeros(a.shape, bool)
    rim[:, :2, :] = rim[:, -2:, :] = rim[:, :, :2] = rim[:, :, -2:] = True
    return int(np.count_nonzero((a != b) & rim))


def compare(spacing: float, runs: dict, labels: dict, reference: np.ndarray, body: np.ndarray) -> dict:
    ours, monai = labels["ours"], labels["monai"]
    whole = np.ones_like(body)
    return {
        "runs": runs, "precision_ours": runs["ours"]["precision"],
        "speedup_vs_monai": runs["monai"]["seconds"] / runs["ours"]["seconds"],
        "peak_rss_ratio_vs_monai": runs["ours"]["peak_rss_mb"] / runs["monai"]["peak_rss_mb"],
        "speedup_fp32_vs_monai": runs["monai"]["seconds"] / runs["ours-fp32"]["seconds"],
        "speedup_openvino_vs_monai": runs["monai"]["seconds"] / runs["ours-openvino"]["seconds"],
        "peak_rss_ratio_openvino_vs_monai": runs["ours-openvino"]["peak_rss_mb"] / runs["monai"]["peak_rss_mb"],
        "precision_openvino": runs["ours-openvino"]["precision"],
        "openvino_vs_torch_dice": dice(ours, labels["ours-openvino"], whole),
        "cpu_time_ratio_monai_over_ours": runs["monai"]["cpu_seconds"] / runs["ours"]["cpu_seconds"],
        "dice_agreement_vs_monai": dice(ours, monai, body),
        "dice_agreement_vs_monai_whole_volume": dice(ours, monai, whole),
        "dice_per_label_vs_monai": dice_per_label(ours, monai),
        "bf16_vs_fp32_dice": dice(ours, labels["ours-fp32"], whole),
        "bf16_vs_fp32_dice_per_label": dice_per_label(ours, labels["ours-fp32"]),
        "nocrop_fp32_vs_monai_dice": dice(labels["ours-nocrop-fp32"], monai, whole),
        "nocrop_fp32_vs_monai_voxels_equal": float(np.mean(labels["ours-nocrop-fp32"] == monai)),
        "edge_voxels_disagreeing_nocrop_fp32_vs_monai": edge_disagreement(labels["ours-nocrop-fp32"], monai),
        "network_dice_vs_pseudo_labels": dice(monai, reference, whole) if spacing < 2 else None,
        "network_dice_per_label_vs_pseudo_labels": dice_per_label(monai, reference) if spacing < 2 else None}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), sys.argv[7])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(DEFAULT_CT), help="a real CT (file or DICOM folder); default lung1 (../shared) or the bundled CT series")
    parser.add_argument("--spacings", default="1.5", help="model spacings: 1.5 (the bundle's) and/or 3 (fast)")
    parser.add_argument("--train-steps", type=int, default=240, help="brief training on the CT's pseudo-labels")
    parser.add_argument("--network-cache", help="folder keeping the trained bundle for later runs")
    parser.add_argument("--train-chunk", type=int, help="only train this many more steps (resumable; needs "
                                                        "--network-cache), then exit: keeps each heavy job short")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from RadAISegmentLib.io import read_image, write_image
    image_path = Path(args.image).resolve()
    image = read_image(image_path)
    results = {}
    with tempfile.TemporaryDirectory(prefix="radai-bench-ct-") as tmp:
        tmp = Path(tmp)
        nifti = tmp / "ct.nii"
        write_image(image, nifti)
        key = f"wholebody_pseudo_{image_path.stem}_steps{args.train_steps}"
        bundle = Path(args.network_cache) / key if args.network_cache else tmp / key
        if args.train_chunk:
            done = make_bundle(bundle, image_path, args.train_steps, args.train_chunk)
            print(json.dumps({"trained": done, "bundle": str(bundle)}))
            return
        make_bundle(bundle, image_path, args.train_steps)
        reference = pseudo_labels(np.asarray(image.array))
        body = reference > 0
        for spacing in (float(s) for s in args.spacings.split(",")):
            conversion = measure("openvino-conversion", image_path, nifti, bundle, spacing, tmp / "conversion.npy")
            runs = {kind: measure(kind, image_path, nifti, bundle, spacing, tmp / f"{kind}.npy") for kind in KINDS}
            labels = {kind: np.load(tmp / f"{kind}.npy") for kind in KINDS}
            results[f"{spacing:g}mm"] = dict(compare(spacing, runs, labels, reference, body),
                                             openvino_conversion_s=conversion["seconds"])
    summary = {"image": str(image_path), "shape_ijk": image.shape_ijk, "spacing_mm": image.spacing_mm,
               "network": f"wholeBody SegResNet, real bundle config, {args.train_steps} steps on pseudo-labels",
               "cpu_threads": os.cpu_count(), "per_spacing": results}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for name, row in results.items():
        ours, monai = row["runs"]["ours"], row["runs"]["monai"]
        print(f"{name}: ours ({row['precision_ours']}) {ours['seconds']:.1f} s / {ours['peak_rss_mb']:.0f} MB, MONAI bundle "
              f"{monai['seconds']:.1f} s / {monai['peak_rss_mb']:.0f} MB → speedup {row['speedup_vs_monai']:.2f}× "
              f"(CPU time {row['cpu_time_ratio_monai_over_ours']:.2f}×; fp32: {row['speedup_fp32_vs_monai']:.2f}×; through OpenVINO "
              f"({row['precision_openvino']}): {row['speedup_openvino_vs_monai']:.2f}× at {row['peak_rss_ratio_openvino_vs_monai']:.2f}× memory, "
              f"labels vs PyTorch's {row['openvino_vs_torch_dice']:.4f}; OpenVINO conversion, first run only: "
              f"{row['openvino_conversion_s']:.1f} s), RSS ratio {row['peak_rss_ratio_vs_monai']:.2f}; Dice vs MONAI "
              f"{row['dice_agreement_vs_monai']:.4f} (body), bf16 vs fp32 {row['bf16_vs_fp32_dice']:.4f}, "
              f"no-crop fp32 vs MONAI {row['nocrop_fp32_vs_monai_dice']:.4f} "
              f"({row['edge_voxels_disagreeing_nocrop_fp32_vs_monai']} edge voxels differ); targets (>= 2x, <= 0.5): "
              + ", ".join("met" if ok else "NOT met" for ok in (row["speedup_vs_monai"] >= 2.0,
                                                                 row["peak_rss_ratio_vs_monai"] <= 0.5)))
        if row["network_dice_vs_pseudo_labels"] is not None:
            print(f"  network Dice vs pseudo-labels {row['network_dice_vs_pseudo_labels']:.3f}; per label bf16 vs fp32: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in row["bf16_vs_fp32_dice_per_label"].items()))


if __name__ == "__main__":
    main()
