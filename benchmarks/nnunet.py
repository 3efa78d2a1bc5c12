"""Benchmark: an nnU-Net v2 model (TotalSegmentator-like: 3d_fullres at 1.5 mm, and a 3 mm "fast" model;
25 output classes as one of TotalSegmentator's parts) through ``nnUNetPredictor`` vs through RadAI, on a
CT-like volume (default 512×512×300 at 0.78×0.78×1.5 mm, the phantom of ``benchmarks/inference.py``).

Peer (``nnunet``), as TotalSegmentator runs nnU-Net: the CT is resampled to the model spacing
(``scipy.ndimage.zoom``, cubic, edge mode, as TotalSegmentator's ``change_spacing``), ``nnUNetPredictor``
(nnunetv2 from PyPI; its CPU defaults: tile step 0.5, Gaussian weighting, float32; no mirroring, as
TotalSegmentator runs it) predicts on that volume, and the labels go back to the input grid by nearest
neighbour (``zoom`` order 0). nnU-Net's own native path on the 0.78 mm volume is not the peer: in nnunetv2
2.5.2 its export holds every class's logits at input resolution in float16, float32 and softmax copies
(~21 GB for 25 classes at 512×512×300), more than this machine can give it.

RadAI, each run in a fresh process:
- ``radai-same-windows``: the same resampled volume, nnU-Net's window positions (``crop_foreground=False``),
  the same nearest-neighbour step back, at RadAI's defaults (``--runtime auto``: the network compiled by
  OpenVINO, float32 as the card says) — what a RadAI user gets at nnU-Net's windows;
- ``radai-same-windows-torch`` (with ``--torch-control``): the same in PyTorch float32 (``--runtime torch``):
  the same windows and arithmetic as nnU-Net, agreement should be 1;
- ``radai-same-windows-bf16`` (unless ``--no-bf16``): the same in PyTorch bfloat16 autocast (``--precision bf16
  --runtime torch``), the memory-lean choice: the window's activations and output take half the bytes;
- ``radai``: what ``radai segment --model ID`` does from the 0.78 mm CT: nnU-Net's own preprocessing
  (normalise, then spline resampling), RadAI's body crop (fewer windows), labels from nnU-Net's logit
  interpolation on the input grid, OpenVINO. Different resampling and windows than the peer: agreement reported.
OpenVINO's conversion of a network (trace, convert, probe: seconds) is done once per network and kept in the
models cache (``cpu_runtime``); a first, unmeasured child converts it into the benchmark's own cache, as a
user's first run would, and its time is reported (``openvino_conversion_s``).

RadAI's runs set up their process as the ``radai`` command does (:mod:`RadAISegmentLib.cpu_memory`:
transparent huge pages for PyTorch's allocator, freed window blocks returned inside the window loop); the peer
runs with the environment the benchmark was started with, as its users run it.

Wall time and peak RSS (``VmHWM`` of the child), ratios vs the peer; agreement = multi-label Dice of the
label volumes inside the body (HU > -500), as ``benchmarks/inference.py``. For the runs on the resampled
volume the engines are compared on their own (the issue's "same model through ``nnUNetPredictor`` vs RadAI"):
the resampling to the model grid and back is the same harness code in both, so its time is left out and
the engine's peak RSS is counted from a reset (``clear_refs``) after it, the input image freed; the whole
runs' ratios are printed beside. The body-crop run is compared whole: RadAI's own resampling is its work.

The network: nnU-Net's PlainConvUNet from the plans (6 stages, 3³ kernels, patch 128³ as TotalSegmentator's
parts) with fewer features per stage (``--features``, default 8 → 8..128; TotalSegmentator's own networks
are 32..320, i.e. ``--features 32``, ~16× the work per window for both pipelines alike), one network for
both spacings, trained briefly on the phantom's own labels at both model grids (``--train-steps`` on
``--train-crop``³ crops, 64 by default: a 128³ step costs ~8× more on a CPU; 300 steps, ~6 minutes) so that
its labels are decisive; its Dice against the phantom labels is reported (``network_dice_vs_phantom``).
``--network-cache DIR`` keeps the trained model folders for later runs.

    .venv/bin/python benchmarks/nnunet.py [--spacings 1.5,3] [--torch-control] [--no-bf16] [--network-cache DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))
sys.path.insert(0, str(ROOT / "benchmarks"))
CLASSES = 25                     # background + 24, as TotalSegmentator's part 1 (organs)
PATCH = (128, 128, 128)
TRAINER = "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"


def plans_for(spacing: float, features: int, intensity: dict) -> dict:
    """nnU-Net v2 plans (current format) for a 3d_fullres PlainConvUNet at ``spacing`` mm isotropic."""
    stages = 6
    width = [min(features * 2 ** i, features * 16) for i in range(stages)]
    config = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": 2, "patch_size": list(PATCH), "median_image_size_in_voxels": [300, 266, 266],
              "spacing": [spacing] * 3, "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
              "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
              "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
              "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                               "arch_kwargs": {"n_stages": stages, "features_per_stage": width,
                                               "conv_op": "torch.nn.modules.conv.Conv3d",
                                               "kernel_sizes": [[3, 3, 3]] * stages,
                                               "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                                               "n_conv_per_stage": [2] * stages,
                                               "n_conv_per_stage_decoder": [2] * (stages - 1), "conv_bias": True,
                                               "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                                               "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                                               "dropout_op": None, "dropout_op_kwargs": None,
                                               "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                               "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
              "batch_dice": False}
    return {"dataset_name": "Dataset991_BenchPhantom", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp":
            [1.5, 0.78, 0.78], "original_median_shape_after_transp": [300, 512, 512],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": config}, "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {"0": intensity}}


def intensity_properties(image: np.ndarray, labels: np.ndarray) -> dict:
    """nnU-Net's fingerprint statistics of the labelled foreground (percentiles 0.5 / 50 / 99.5, mean, std)."""
    values = image[labels > 0].astype(np.float64)
    low, median, high = np.percentile(values, (0.5, 50.0, 99.5))
    return {"mean": float(values.mean()), "median": float(median), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "percentile_99_5": float(high), "percentile_00_5": float(low)}


def make_models(folder: Path, ct_path: Path, labels_path: Path, spacings: list[float], features: int,
                steps: int, crop: int = 64) -> tuple[dict, float]:
    """One result folder per spacing (same network), trained ``steps`` Adam steps on ``crop``³ crops of the
    phantom preprocessed by nnU-Net's own preprocessor at each model grid (alternating)."""
    import torch
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from RadAISegmentLib.io import read_image, read_labelmap
    image, labels = read_image(ct_path), read_labelmap(labels_path)
    intensity = intensity_properties(image.array, labels.array)
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **{f"class_{c:02d}": c for c in range(1, CLASSES)}},
               "numTraining": 1, "file_ending": ".nii.gz"}
    data, folders = [], {}
    for spacing in spacings:
        plans = plans_for(spacing, features, intensity)
        manager = PlansManager(plans)
        config = manager.get_configuration("3d_fullres")
        x, y = DefaultPreprocessor(verbose=False).run_case_npy(
            image.array[None].astype(np.float32), labels.array[None].astype(np.int16),
            {"spacing": list(image.spacing_mm)[::-1]}, manager, config, dataset)
        data.append((torch.from_numpy(x), torch.from_numpy(np.maximum(y[0], 0).astype(np.int64))))
        folders[spacing] = (folder / f"{spacing:g}mm" / TRAINER, plans, config)
    torch.manual_seed(0)
    config = folders[spacings[0]][2]
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, 1, CLASSES, deep_supervision=False)
    train(network, data, steps, (crop,) * 3)
    for spacing, (result, plans, _) in folders.items():
        (result / "fold_0").mkdir(parents=True, exist_ok=True)
        (result / "plans.json").write_text(json.dumps(plans, indent=1))
        (result / "dataset.json").write_text(json.dumps(dataset, indent=1))
        torch.save({"network_weights": network.state_dict(), "trainer_name": "nnUNetTrainerNoMirroring",
                    "init_args": {"configuration": "3d_fullres", "fold": 0}, "inference_allowed_mirroring_axes": None,
                    "logging": {"train_losses": [np.float64(0.0)]}, "current_epoch": steps},
                   result / "fold_0" / "checkpoint_final.pth")
    return {s: str(r) for s, (r, _, _) in folders.items()}, float(intensity["mean"])


def train(network, data, steps: int, patch: tuple = PATCH) -> None:
    """Adam (cosine-decayed 1e-2), class-weighted cross-entropy on ``patch`` crops centred on labelled voxels
    half the time; the grids alternate."""
    import torch
    rng = np.random.default_rng(0)
    centres = []
    for _, y in data:                                          # a sample of labelled voxels per grid
        labelled = np.flatnonzero(y.numpy().ravel() > 0)
        picked = rng.choice(labelled, size=min(4096, labelled.size), replace=False)
        centres.append(np.stack(np.unravel_index(picked, tuple(y.shape)), 1))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps), eta_min=2e-4)
    network.train()
    for step in range(steps):
        x, y = data[step % len(data)]
        pad = [max(0, p - s) for p, s in zip(patch, y.shape)]
        widths = [w for p in reversed(pad) for w in (p // 2, p - p // 2)]
        x, y = torch.nn.functional.pad(x, widths), torch.nn.functional.pad(y, widths)
        if step % 2:
            sample = centres[step % len(data)]
            centre = sample[rng.integers(0, len(sample))] + np.array([p // 2 for p in pad])
            corner = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, y.shape)]
        else:
            corner = [int(rng.integers(0, s - p + 1)) for s, p in zip(y.shape, patch)]
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        logits = network(x[(slice(None),) + window][None])
        target = y[window][None]
        counts = torch.bincount(target.flatten(), minlength=CLASSES).float()
        weight = torch.where(counts > 0, (counts.sum() / counts.clamp_min(1)) ** 0.5, torch.ones(()))
        loss = torch.nn.functional.cross_entropy(logits, target, weight=weight / weight.mean())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"  benchmark network, step {step + 1}/{steps}: loss {loss.item():.3f}", file=sys.stderr, flush=True)
    network.eval()


def to_model_grid(array: np.ndarray, spacing_kji, target: float) -> np.ndarray:
    """TotalSegmentator's resampling to the model spacing: ``scipy.ndimage.zoom`` cubic, edge mode."""
    from scipy import ndimage
    return ndimage.zoom(array.astype(np.float32), [s / target for s in spacing_kji], order=3, mode="nearest")


def to_input_grid(labels: np.ndarray, shape) -> np.ndarray:
    """Labels back onto the input's voxels by nearest neighbour (TotalSegmentator's ``change_spacing`` order 0)."""
    from scipy import ndimage
    return ndimage.zoom(labels, [t / s for t, s in zip(shape, labels.shape)], order=0, mode="nearest")


def child(kind: str, image_path: str, model_folder: str, spacing: float, out: str) -> None:
    """One measured run (in its own process): labels saved to ``out``; prints seconds and peak RSS of the
    whole run and, for the runs on the harness's resampled volume, of the engine alone (the resampling to
    the model grid and back is TotalSegmentator's step, the same code in both: the engine's peak RSS is
    counted from a reset after it, with the input image freed)."""
    if kind != "nnunet":                      # as the radai command does, before PyTorch's first allocation
        from RadAISegmentLib.cpu_memory import tune_cpu_memory
        tune_cpu_memory()
    import torch
    from RadAISegmentLib.device import choose_device
    from RadAISegmentLib.io import read_image
    choose_device("cpu")
    image = read_image(image_path)
    spacing_kji, input_shape = list(image.spacing_mm)[::-1], image.array.shape
    if kind == "nnunet":
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(model_folder, use_folds=(0,))
    else:
        from RadAISegmentLib.inference import segment_image
        from RadAISegmentLib.image import Image
        from RadAISegmentLib.models.loaders import load_model_folder
        model = load_model_folder(Path(model_folder).parent)
    start = time.perf_counter()
    if kind == "openvino-conversion":
        from RadAISegmentLib.cpu_runtime import runtime_network
        part = model.extras["nnunet_parts"][0]
        runtime_network(part.networks[0], choose_device("cpu", "fp32").with_runtime("openvino"),
                        (1, 1, *part.config.patch_size))
        print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))
        return
    result = {}
    if kind == "radai":
        labels = segment_image(image, model, device="cpu", crop_foreground=True).array
    else:
        volume = to_model_grid(image.array, spacing_kji, spacing)
        del image
        peak_before = peak_rss_mb()
        reset_peak_rss()
        engine_start = time.perf_counter()
        if kind == "nnunet":
            small = predictor.predict_single_npy_array(volume[None], {"spacing": [spacing] * 3}, None, None, False)
        else:
            grid = Image(volume, (spacing,) * 3, (0.0, 0.0, 0.0), np.eye(3), metadata={"modality": "CT"})
            small = segment_image(grid, model, device="cpu", crop_foreground=False,
                                  runtime="torch" if kind.endswith(("-torch", "-bf16")) else "auto",
                                  precision="bf16" if kind.endswith("-bf16") else "auto").array
        result = {"engine_seconds": time.perf_counter() - engine_start, "engine_peak_rss_mb": peak_rss_mb()}
        labels = to_input_grid(np.asarray(small, dtype=np.uint8), input_shape)
        result["peak_rss_mb"] = max(peak_before, peak_rss_mb())
    seconds = time.perf_counter() - start
    np.save(out, labels.astype(np.uint8))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), **result}))


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Start ``VmHWM`` afresh from the current RSS (Linux ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(kind: str, image_path: Path, model_folder: str, spacing: float, out: Path) -> dict:
    """One child run; its models cache (and so OpenVINO's kept conversions) is the benchmark's own."""
    env = dict(os.environ, RADAI_MODELS_DIR=str(out.parent / "models-cache"))
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(image_path), model_folder, str(spacing),
                           str(out)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} run failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="512,512,300", help="volume size i,j,k")
    parser.add_argument("--spacing", default="0.78,0.78,1.5", help="input voxel size mm (i,j,k)")
    parser.add_argument("--spacings", default="1.5,3", help="model spacings (mm): 1.5 (TotalSegmentator) and/or 3 (fast)")
    parser.add_argument("--features", type=int, default=8, help="features of the first stage (TotalSegmentator: 32)")
    parser.add_argument("--train-steps", type=int, default=300,
                        help="brief training of the network (300: Dice ~0.83 against the phantom, decisive labels)")
    parser.add_argument("--torch-control", action="store_true",
                        help="also RadAI at nnU-Net's windows in PyTorch float32 (labels equal nnU-Net's; +3 min)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="RadAI at nnU-Net's windows in PyTorch bfloat16 too (--precision bf16 --runtime torch: "
                             "the memory-lean choice; labels differ from nnU-Net's at near-ties; on by default)")
    parser.add_argument("--train-crop", type=int, default=64, help="training crop edge (voxels, a multiple of 32)")
    parser.add_argument("--network-cache", help="folder keeping the trained model folders for later runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from inference import dice_agreement, make_ct          # the MONAI benchmark's phantom and agreement
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    spacings = [float(s) for s in args.spacings.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="radai-bench-nnunet-") as tmp:
        tmp = Path(tmp)
        phantom, truth_path = tmp / "phantom.nrrd", tmp / "labels.nrrd"
        make_ct(shape, spacing, phantom, truth_path)
        key = f"f{args.features}_steps{args.train_steps}_crop{args.train_crop}_{'x'.join(map(str, shape))}_{'_'.join(f'{s:g}' for s in spacings)}"
        cache = Path(args.network_cache) / key if args.network_cache else tmp / "models"
        index = cache / "models.json"
        if index.exists():
            folders = {float(k): v for k, v in json.loads(index.read_text()).items()}
        else:
            start = time.perf_counter()
            folders, _ = make_models(cache, phantom, truth_path, spacings, args.features, args.train_steps,
                                     args.train_crop)
            index.write_text(json.dumps(folders))
            print(f"trained the benchmark network in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        from RadAISegmentLib.io import read_image, read_labelmap
        image = read_image(phantom)
        body = image.array > -500
        truth = read_labelmap(truth_path).array
        for model_spacing in spacings:
            conversion = measure("openvino-conversion", phantom, folders[model_spacing], model_spacing,
                                 tmp / "conversion.npy")
            kinds = ["nnunet", "radai-same-windows"] + ["radai-same-windows-torch"] * args.torch_control \
                + ["radai-same-windows-bf16"] * args.bf16 + ["radai"]
            runs = {kind: measure(kind, phantom, folders[model_spacing], model_spacing, tmp / f"{kind}.npy")
                    for kind in kinds}
            labels = {kind: np.load(tmp / f"{kind}.npy") for kind in runs}
            peer = runs["nnunet"]

            def versus(kind: str, engine: bool) -> dict:
                """Ratios vs the peer: of the engines alone (``engine``: same input volume, same windows;
                the whole runs beside them) or of the whole runs."""
                seconds, rss = ("engine_seconds", "engine_peak_rss_mb") if engine else ("seconds", "peak_rss_mb")
                row = {"speedup": peer[seconds] / runs[kind][seconds], "peak_rss_ratio": runs[kind][rss] / peer[rss],
                       "agreement": dice_agreement(labels[kind], labels["nnunet"], body),
                       "voxels_differing": int(np.count_nonzero(labels[kind] != labels["nnunet"]))}
                if engine:
                    row["whole_run"] = {"speedup": peer["seconds"] / runs[kind]["seconds"],
                                        "peak_rss_ratio": runs[kind]["peak_rss_mb"] / peer["peak_rss_mb"]}
                return row
            results[f"{model_spacing:g}mm"] = {
                "runs": runs, "network_dice_vs_phantom": dice_agreement(labels["nnunet"], truth, body),
                "openvino_conversion_s": conversion["seconds"], "same_windows": versus("radai-same-windows", True),
                "same_windows_torch": versus("radai-same-windows-torch", True) if args.torch_control else None,
                "same_windows_bf16": versus("radai-same-windows-bf16", True) if args.bf16 else None,
                "radai_body_crop": versus("radai", False)}
    summary = {"volume_shape_ijk": shape, "volume_spacing_mm": spacing, "classes": CLASSES, "features": args.features,
               "train_steps": args.train_steps, "train_crop": args.train_crop, "cpu_threads": os.cpu_count(), "per_spacing": results}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for name, row in results.items():
        same, crop, runs = row["same_windows"], row["radai_body_crop"], row["runs"]
        peer, ours = runs["nnunet"], runs["radai-same-windows"]
        control = "".join(f"; in PyTorch {label} {runs[kind]['engine_seconds']:.1f} s / "
                          f"{runs[kind]['engine_peak_rss_mb']:.0f} MB → {other['speedup']:.2f}×, "
                          f"{other['peak_rss_ratio']:.2f}× memory, agreement {other['agreement']:.4f}"
                          for label, kind, other in (("float32", "radai-same-windows-torch", row["same_windows_torch"]),
                                                     ("bfloat16", "radai-same-windows-bf16", row["same_windows_bf16"]))
                          if other is not None)
        print(f"{name}: engines on the same volume and windows: nnU-Net {peer['engine_seconds']:.1f} s / "
              f"{peer['engine_peak_rss_mb']:.0f} MB, RadAI {ours['engine_seconds']:.1f} s / {ours['engine_peak_rss_mb']:.0f} MB"
              f" → {same['speedup']:.2f}× faster, {same['peak_rss_ratio']:.2f}× memory, agreement {same['agreement']:.4f}"
              f" (targets ≥ 1.5×, ≤ 0.5×, ≥ 0.999; whole runs with the shared resampling {same['whole_run']['speedup']:.2f}×,"
              f" {same['whole_run']['peak_rss_ratio']:.2f}×){control}; whole runs from the "
              f"{'x'.join(map(str, summary['volume_shape_ijk']))} CT: nnU-Net {peer['seconds']:.1f} s / "
              f"{peer['peak_rss_mb']:.0f} MB, RadAI with body crop {runs['radai']['seconds']:.1f} s / "
              f"{runs['radai']['peak_rss_mb']:.0f} MB → {crop['speedup']:.2f}× (target ≥ 2×), {crop['peak_rss_ratio']:.2f}× "
              f"memory, agreement {crop['agreement']:.4f}; OpenVINO conversion (first run only) "
              f"{row['openvino_conversion_s']:.1f} s; network Dice vs phantom {row['network_dice_vs_phantom']:.3f}")

if __name__ == "__main__":
    main()
