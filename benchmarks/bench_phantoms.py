"""Phantom generation: speed and voxel-volume accuracy vs plain voxel-centre sampling.

Peer: the obvious way to draw an ellipsoid, ``mask = normalised_radius(voxel centres) <= 1``.
RadAI's ``ellipsoid_mask`` supersamples boundary voxels and keeps the ``round(occupied volume)``
most occupied voxels. Prints time per generator and, for random ellipsoids on oblique anisotropic
grids, the worst relative volume error of both methods and their time ratio.

    python benchmarks/bench_phantoms.py [--json]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "RadAISegment"))

from RadAISegmentLib import phantoms, phantoms_cardiac  # noqa: E402


def _timed(function, *args, repeats: int = 3, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def centre_sampled_mask(grid, ellipsoid) -> np.ndarray:
    """Voxel-centre test inside the same bounding box RadAI uses (so timings compare like with like)."""
    box, _, _, q = phantoms._index_quadratic(grid, ellipsoid)
    mask = np.zeros(grid.array.shape, dtype=bool)
    mask[box] = (q <= 1.0).reshape(tuple(s.stop - s.start for s in box))
    return mask


def accuracy(trials: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    errors_radai, errors_peer, time_radai, time_peer = [], [], 0.0, 0.0
    for _ in range(trials):
        spacing = tuple(rng.uniform(0.6, 3.0, size=3))
        grid = phantoms.centred_grid((64, 64, 48), spacing, (0, 0, 0), phantoms.rotation_matrix(rng.uniform(-40, 40, 3)))
        extent = 0.3 * min(np.asarray(spacing) * (64, 64, 48))
        axes = tuple(map(tuple, phantoms.rotation_matrix(rng.uniform(-90, 90, 3))))
        shape = phantoms.Ellipsoid((0.0, 0.0, 0.0), tuple(rng.uniform(0.25, 1.0, 3) * extent), axes)
        start = time.perf_counter()
        ours = phantoms.ellipsoid_mask(grid, shape)
        time_radai += time.perf_counter() - start
        start = time.perf_counter()
        peer = centre_sampled_mask(grid, shape)
        time_peer += time.perf_counter() - start
        errors_radai.append(abs(ours.sum() * grid.voxel_volume_mm3 / shape.volume_mm3 - 1.0))
        errors_peer.append(abs(peer.sum() * grid.voxel_volume_mm3 / shape.volume_mm3 - 1.0))
    return {"max_rel_volume_error_radai": float(max(errors_radai)),
            "max_rel_volume_error_centre_sampling": float(max(errors_peer)),
            "time_ratio_radai_over_centre_sampling": time_radai / time_peer}


def main() -> None:
    results = {
        "abdominal_ct_phantom_s": _timed(phantoms.abdominal_ct_phantom),
        "abdominal_ct_phantom_rotated_s": _timed(phantoms.abdominal_ct_phantom, rotated=True),
        "cardiac_cine_phantom_20_phases_s": _timed(phantoms_cardiac.cardiac_cine_phantom),
        "followup_pair_phantom_s": _timed(phantoms.followup_pair_phantom),
        **accuracy(),
    }
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:45s} {value:.4g}")


if __name__ == "__main__":
    main()
