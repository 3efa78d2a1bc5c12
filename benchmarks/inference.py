"""Benchmark: RadAI inference vs plain MONAI ``sliding_window_inference`` (default settings), same network
(the wholeBody_ct_segmentation SegResNet architecture: 105 classes, init_filters 32) and the same weights,
on a CT-like volume (default 512×512×300 at 0.78×0.78×1.5 mm, i.e. the issue's size).

Each run happens in its own subprocess so wall time and peak RSS are measured separately. Peak RSS is the
child's ``VmHWM`` (``/proc/self/status``): ``ru_maxrss`` is not reset by ``exec`` on Linux, so a child of a
parent that had just trained the network reported the parent's 5.1 GB as its own floor.
Both pipelines read the same volume, resample it to the model spacing (linear, edge values beyond the last
voxel as MONAI's Spacingd), normalise it the same way, and bring the uint8 labels back to the input grid with
nearest neighbour; they differ only in the inference step (ours: body crop grown to whole windows,
channels-last convolutions on CPU under bfloat16 autocast where the CPU has bf16 instructions (``precision``
in the JSON says which ran; ``ours-nocrop`` runs float32), slab-wise uint8 argmax, Gaussian stitching; MONAI:
whole volume, per-class float32 output, constant weights, overlap 0.25, sw_batch_size 1). For MONAI's own
bundle pipeline (its transforms, inferer and ``Invertd``) on a real CT see ``benchmarks/inference_real_ct.py``. MONAI is also run with ``mode="gaussian"`` (the wholeBody bundle's own setting):
``dice_agreement_vs_monai_gaussian``, and ``dice_monai_constant_vs_monai_gaussian`` shows how much this
network's labels move when only the blending changes (same windows).

Weights: random weights leave the 105 logits tied, so the network is first trained briefly on this
benchmark's own phantom (``--train-steps``; Adam, cosine-decayed learning rate, 96³ windows). Even so it is
far from a trained model: 400 steps (~70 min on 2 cores) reach Dice 0.58 against the phantom's labels
(``network_dice_vs_phantom_labels``), and MONAI's constant and Gaussian blending of the same windows agree
only at Dice 0.991–0.993. A trial with contrast-enhanced phantom values (liver 105, spleen 125 HU) and
organ-centred 96³ training windows (240 steps, commit 397cd96, reverted) reached Dice 0.69 against the labels
but agreed with MONAI only at 0.89 (1.5 mm) / 0.97 (3 mm), MONAI constant vs Gaussian 0.94 / 0.98: a
half-trained network that has begun to separate organs is less stable under window changes, not more.

Agreement: multi-label Dice (voxels with equal non-zero label / mean non-zero count) between the two label
volumes inside the body (HU > -500); over the whole volume too. ``dice_agreement_without_crop_vs_monai`` runs
our engine on MONAI's window positions with MONAI's constant weighting: it checks that stitching, argmax and
resampling are equivalent (0.9999 measured). With the crop, windows sit elsewhere; SegResNet's GroupNorm
makes every window's logits depend on the window's content, so wherever this weakly trained network is
unsure the argmax can flip — ``dice_agreement_vs_monai`` measures that, and is only as high as the network
is confident.

Default spacings: only the fast 3 mm mode. The 1.5 mm mode (``--spacings 1.5,3``) takes ~15 min on 2 cores
and MONAI's plain path needs ~9 GB for the per-class output at that size, so it is opt-in; when run, it is
the headline (the model's own spacing). At 3 mm one 96³ window of this SegResNet alone needs ~1.3 GB, which
bounds how far below MONAI's peak any pipeline running the same network can go.
``--network-cache DIR`` keeps the trained benchmark network for later runs (400 steps take ~70 min).
``--model PATH`` (a model folder or MONAI bundle with trained weights, e.g. the real wholeBody_ct_segmentation)
and ``--image PATH`` (a real CT, file or DICOM folder) replace the stand-in network and the phantom; with a
trained model, ``dice_agreement_vs_monai`` is the figure that settles what the crop costs.
``--json`` prints one JSON object (speedup_vs_monai, peak_rss_ratio_vs_monai, dice_agreement_vs_monai,
lesion_seconds_per_lesion, lesion_seconds_per_click, per-spacing details).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "RadAISegment"))
NETWORK_ARGS = dict(spatial_dims=3, in_channels=1, out_channels=105, init_filters=32, blocks_down=[1, 2, 2, 4],
                    blocks_up=[1, 1, 1], dropout_prob=0.2)


def make_ct(shape_ijk, spacing_mm, path: Path, labels_path: Path, seed: int = 0) -> None:
    """CT-like volume and its labels: air 0, fat 1, soft tissue 2, liver 3, spleen 4, vertebra 5.

    The patient table (300 HU plate below the body) is in the image but labelled background, as in the
    whole-body models it stands for (TotalSegmentator's classes have no table).
    """
    from RadAISegmentLib.image import Image
    from RadAISegmentLib.io import write_image
    rng = np.random.default_rng(seed)
    ni, nj, nk = shape_ijk
    j, i = np.mgrid[0:nj, 0:ni].astype(np.float32)
    x, y = (i - ni / 2) * spacing_mm[0], (j - nj / 2) * spacing_mm[1]
    slice_ = np.full((nj, ni), -1000, np.int16)
    labels = np.zeros((nj, ni), np.uint8)
    for label, hu, region in (
            (1, -100, (x / 170) ** 2 + (y / 120) ** 2 < 1),
            (2, 40, (x / 155) ** 2 + (y / 105) ** 2 < 1),
            (3, 60, ((x + 60) / 70) ** 2 + ((y + 10) / 55) ** 2 < 1),       # liver
            (4, 50, ((x - 70) / 35) ** 2 + ((y - 20) / 30) ** 2 < 1),       # spleen
            (5, 700, (x / 18) ** 2 + ((y - 70) / 18) ** 2 < 1),             # vertebra
            (0, 300, (np.abs(y - 140) < 6) & (np.abs(x) < 200))):           # table: background
        slice_[region], labels[region] = hu, label
    array = np.empty((nk, nj, ni), np.int16)
    for k in range(nk):
        array[k] = slice_ + rng.normal(0, 15, slice_.shape).astype(np.int16)
    grid = Image(array, spacing_mm, (0.0, 0.0, 0.0), np.eye(3), metadata={"modality": "CT"})
    write_image(grid, path)
    write_image(grid.with_array(np.broadcast_to(labels, array.shape).copy()), labels_path)


def make_model(folder: Path, ct_path: Path, labels_path: Path, train_steps: int) -> Path:
    """A model folder (card + SegResNet weights) as the wholeBody bundle describes it, briefly trained.

    Random weights leave the 105 logits nearly tied, so any change of window placement flips the
    argmax and "agreement" measures noise. ``train_steps`` Adam steps of cross-entropy on 96³ crops of
    this benchmark's own CT and labels (at the 1.5 mm and 3 mm model grids) make the network decisive
    the way a trained model is, without claiming any anatomy. 0 keeps the random weights.
    """
    import hashlib
    import torch
    from monai.networks.nets import SegResNet
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    network = SegResNet(**NETWORK_ARGS)
    card = {"id": "bench-wholebody", "title": "wholeBody SegResNet (benchmark weights)", "task": "segmentation",
            "modality": ["CT"], "labels": [{"label": c, "name": f"class {c}"} for c in range(1, 105)],
            "input": {"spacing_mm": [1.5, 1.5, 1.5], "channels": 1, "patch_size": [96, 96, 96],
                      "normalisation": [{"kind": "zscore", "nonzero": True}, {"kind": "scale_minmax", "minv": -1, "maxv": 1}]},
            "network": {"format": "state_dict", "name": "monai.networks.nets.SegResNet", "parameters": NETWORK_ARGS,
                        "orientation": "RAS", "overlap": 0.25},
            "weights": {"file": "model.pt", "sha256": ""}}
    if train_steps > 0:
        train_briefly(network, card, ct_path, labels_path, train_steps)
    torch.save(network.state_dict(), folder / "model.pt")
    card["weights"]["sha256"] = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def train_briefly(network, card: dict, ct_path: Path, labels_path: Path, steps: int, crop: int = 96) -> None:
    """Adam with cosine-decayed learning rate, cross-entropy on ``crop``³ windows (the inference window size,
    so GroupNorm statistics match inference), alternating the 1.5 mm and 3 mm grids."""
    import SimpleITK as sitk
    import torch
    from types import SimpleNamespace
    from RadAISegmentLib.inference import _resample, model_grid, normalise
    from RadAISegmentLib.io import read_image, read_labelmap
    image, labels = read_image(ct_path), read_labelmap(labels_path)
    spec = SimpleNamespace(orientation="RAS", spacing_mm=tuple(card["input"]["spacing_mm"]), spatial_dims=3)
    volumes = []
    for fast in (False, True):
        grid = model_grid(image, spec, fast)
        ct = sitk.GetArrayFromImage(_resample(image, *grid, False, float(image.array.min())))
        seg = sitk.GetArrayFromImage(_resample(labels, *grid, True, 0))
        x = normalise(torch.from_numpy(ct.transpose(2, 1, 0).copy())[None], card["input"]["normalisation"])
        volumes.append((x, torch.from_numpy(seg.transpose(2, 1, 0).astype(np.int64).copy())))
    rng = np.random.default_rng(0)
    optimiser = torch.optim.Adam(network.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps), eta_min=2e-5)
    network.train()
    for step in range(steps):
        x, y = volumes[step % 2]
        sizes = [min(crop, n // 8 * 8) for n in y.shape]                    # SegResNet needs multiples of 8
        corner = [int(rng.integers(0, n - size + 1)) for n, size in zip(y.shape, sizes)]
        window = tuple(slice(c, c + size) for c, size in zip(corner, sizes))
        logits = network(x[(slice(None),) + window][None])
        loss = torch.nn.functional.cross_entropy(logits, y[window][None])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 20 == 0 or step == steps - 1:
            print(f"  benchmark network, step {step + 1}/{steps}: cross-entropy {loss.item():.3f}", file=sys.stderr)
    network.eval()


def child(kind: str, image_path: str, model_folder: str, spacing: float, out: str) -> None:
    """One measured run (in a subprocess): writes labels to ``out`` (.npy) and prints seconds + peak RSS."""
    import torch
    from RadAISegmentLib.device import choose_device
    from RadAISegmentLib.inference import model_grid, normalise, segment_image
    from RadAISegmentLib.io import read_image
    from RadAISegmentLib.models.loaders import load_model_folder
    choose_device("cpu")
    image = read_image(image_path)
    model = load_model_folder(model_folder)
    start = time.perf_counter()
    fast = spacing > 1.5 + 1e-6
    precision = "fp32"
    if kind in ("ours", "ours-nocrop"):
        labelmap = segment_image(image, model, device="cpu", fast=fast, crop_foreground=kind == "ours",
                                 window_weighting="gaussian" if kind == "ours" else "constant",
                                 stitch_dtype=None if kind == "ours" else torch.float32,
                                 precision="auto" if kind == "ours" else "fp32")
        labels, precision = labelmap.array, labelmap.metadata["inference_precision"]
    else:
        from monai.inferers import sliding_window_inference
        from RadAISegmentLib.grid_resample import grid_axes, image_to_model_grid, labels_to_input_grid
        grid = model_grid(image, model, fast)
        axes = grid_axes(image, *grid)                 # the same resampling both ways as ours (as MONAI's Spacingd)
        volume = normalise(torch.from_numpy(image_to_model_grid(image, axes))[None], model.normalisation)
        with torch.inference_mode():
            mode = "gaussian" if kind == "monai-gaussian" else "constant"          # constant: MONAI's default
            logits = sliding_window_inference(volume[None], model.roi_size, 1, model.network, mode=mode)
        labels_xyz = logits[0].argmax(0).to(torch.uint8).numpy()
        del logits
        labels = labels_to_input_grid(labels_xyz, image, axes)
    seconds = time.perf_counter() - start
    np.save(out, labels.astype(np.uint8))
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "precision": precision}))


def peak_rss_mb() -> float:
    """This process image's peak resident memory (MB): ``VmHWM``, which ``exec`` resets (``ru_maxrss`` keeps
    the parent's peak on Linux); ``ru_maxrss`` where ``/proc`` is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind, image_path, model_folder, spacing, out) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(image_path), str(model_folder),
                           str(spacing), str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} run failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dice_agreement(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float | None:
    a, b = a[region], b[region]
    both = np.count_nonzero((a == b) & (a > 0))
    total = np.count_nonzero(a > 0) + np.count_nonzero(b > 0)
    return None if total == 0 else 2.0 * both / total      # nothing segmented: no agreement to claim (JSON null)


def read_labelmap_array(path: Path) -> np.ndarray:
    from RadAISegmentLib.io import read_labelmap
    return read_labelmap(path).array


def lesion_timing() -> tuple:
    """Seconds per lesion and per correction click of the shipped lesion model (``benchmarks/lesion.py``:
    bundled real lung CT, model warm, pre- and post-processing included); ``(None, None, why)`` without it."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from lesion import lesion_timings
        figures = lesion_timings(repeats=3)
    except Exception as error:  # noqa: BLE001
        return None, None, f"lesion model not available ({str(error).splitlines()[0][:120]})"
    note = (f"{figures['case']}, lesion-roi {figures['model_version']}, {figures['precision']}, "
            f"median of 3 after warm-up")
    return figures["lesion_seconds_per_lesion"], figures["lesion_seconds_per_click"], note


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="512,512,300", help="volume size i,j,k (default: the issue's)")
    parser.add_argument("--spacing", default="0.78,0.78,1.5", help="input voxel size mm")
    parser.add_argument("--spacings", default="3", help="model spacings to test: 1.5 (model) and/or 3 (fast)")
    parser.add_argument("--train-steps", type=int, default=150,
                        help="brief training of the benchmark network (0 = random weights)")
    parser.add_argument("--network-cache", help="folder to keep the briefly trained benchmark network in and reuse "
                                                "on later runs with the same --train-steps (training takes minutes)")
    parser.add_argument("--model", help="a model folder or MONAI bundle (folder or zip) with trained weights, e.g. "
                                        "wholeBody_ct_segmentation with its models/model.pt, benchmarked instead "
                                        "of the briefly trained stand-in (--train-steps is then ignored)")
    parser.add_argument("--image", help="a real CT (file or DICOM folder) instead of the phantom; agreement is "
                                        "then measured inside HU > -500 and there are no labels to score the "
                                        "network against")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    results = {}
    with tempfile.TemporaryDirectory(prefix="radai-bench-") as tmp:
        tmp = Path(tmp)
        phantom = tmp / "phantom.nrrd"
        if not (args.model and args.image):                     # the stand-in network and/or the image
            make_ct(shape, spacing, phantom, tmp / "labels.nrrd")
        image_path = Path(args.image).resolve() if args.image else phantom
        key = f"steps{args.train_steps}_crop96cos_{'x'.join(map(str, shape))}_{'x'.join(f'{v:g}' for v in spacing)}"
        cached = Path(args.network_cache) / key if args.network_cache else None
        if args.model:
            model = Path(args.model).resolve()
        elif cached is not None and (cached / "card.json").exists():
            model = cached
        else:
            model = make_model(cached or tmp / "model", phantom, tmp / "labels.nrrd", args.train_steps)
        body = None
        for model_spacing in (float(s) for s in args.spacings.split(",")):
            runs = {kind: measure(kind, image_path, model, model_spacing, tmp / f"{kind}.npy")
                    for kind in ("monai", "monai-gaussian", "ours", "ours-nocrop")}
            ours, monai = np.load(tmp / "ours.npy"), np.load(tmp / "monai.npy")
            nocrop = np.load(tmp / "ours-nocrop.npy")
            monai_gaussian = np.load(tmp / "monai-gaussian.npy")
            if body is None:
                from RadAISegmentLib.io import read_image
                image = read_image(image_path)
                body = image.array > -500
                shape, spacing = tuple(image.shape_ijk), tuple(image.spacing_mm)
            scored = not (args.model or args.image)              # phantom labels only fit the stand-in network
            results[f"{model_spacing:g}mm"] = {
                "network_dice_vs_phantom_labels":
                    dice_agreement(monai, read_labelmap_array(tmp / "labels.nrrd"), body) if scored else None,
                "ours": runs["ours"], "monai": runs["monai"],
                "speedup_vs_monai": runs["monai"]["seconds"] / runs["ours"]["seconds"],
                "peak_rss_ratio_vs_monai": runs["ours"]["peak_rss_mb"] / runs["monai"]["peak_rss_mb"],
                "dice_agreement_vs_monai": dice_agreement(ours, monai, body),
                "dice_agreement_whole_volume": dice_agreement(ours, monai, np.ones_like(body)),
                "monai_gaussian": runs["monai-gaussian"],
                "dice_agreement_vs_monai_gaussian": dice_agreement(ours, monai_gaussian, body),
                "dice_monai_constant_vs_monai_gaussian": dice_agreement(monai, monai_gaussian, body),
                "ours_without_crop": runs["ours-nocrop"],
                "dice_agreement_without_crop_vs_monai": dice_agreement(nocrop, monai, body)}
    headline_spacing = "1.5mm" if "1.5mm" in results else next(iter(results))   # the model's own spacing first
    first = results[headline_spacing]
    lesion_seconds, click_seconds, lesion_note = lesion_timing()
    summary = {"headline_spacing": headline_spacing,
               "speedup_vs_monai": first["speedup_vs_monai"], "peak_rss_ratio_vs_monai": first["peak_rss_ratio_vs_monai"],
               "dice_agreement_vs_monai": first["dice_agreement_vs_monai"],
               "dice_agreement_without_crop_vs_monai": first["dice_agreement_without_crop_vs_monai"],
               "dice_agreement_vs_monai_gaussian": first["dice_agreement_vs_monai_gaussian"],
               "network": str(args.model) if args.model else f"stand-in trained {args.train_steps} steps",
               "image": str(args.image) if args.image else "phantom",
               "network_dice_vs_phantom_labels": first["network_dice_vs_phantom_labels"],
               "lesion_seconds_per_lesion": lesion_seconds, "lesion_seconds_per_click": click_seconds,
               "lesion_note": lesion_note,
               "volume_shape_ijk": shape, "volume_spacing_mm": spacing, "cpu_threads": os.cpu_count(),
               "per_spacing": results}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, row in results.items():
            print(f"{name}: ours {row['ours']['seconds']:.1f} s / {row['ours']['peak_rss_mb']:.0f} MB, MONAI "
                  f"{row['monai']['seconds']:.1f} s / {row['monai']['peak_rss_mb']:.0f} MB → speedup "
                  f"{row['speedup_vs_monai']:.2f}×, RSS ratio {row['peak_rss_ratio_vs_monai']:.2f}, "
                  f"Dice {row['dice_agreement_vs_monai'] or float('nan'):.4f}; targets (>= 2x, <= 0.5, >= 0.99): "
                  + ", ".join("met" if ok else "NOT met" for ok in (row["speedup_vs_monai"] >= 2.0,
                                                                     row["peak_rss_ratio_vs_monai"] <= 0.5,
                                                                     (row["dice_agreement_vs_monai"] or 0) >= 0.99)))
        print(f"lesion: {lesion_seconds} s/lesion, {click_seconds} s/click ({lesion_note})")


if __name__ == "__main__":
    main()
