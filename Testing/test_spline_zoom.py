"""Axis-by-axis cubic resizing equals scikit-image's ``resize(order=3, mode="edge")`` value for value."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

from RadAISegmentLib.spline_zoom import cubic_resize, cubic_taps

SHAPES = [((13, 17, 11), (10, 14, 9)), ((7, 19, 16), (9, 15, 13)), ((30, 31, 29), (60, 20, 29)),
          ((5, 40, 33), (5, 11, 9)), ((1, 6, 5), (3, 6, 2)), ((17, 23), (40, 7))]


@pytest.mark.parametrize("shape_in, shape_out", SHAPES)
def test_cubic_resize_equals_scikit_image(shape_in, shape_out, monkeypatch):
    import RadAISegmentLib.spline_zoom as spline_zoom
    monkeypatch.setattr(spline_zoom, "SLAB_VOXELS", 50)       # many slabs: their seams must not show
    volume = (np.random.default_rng(0).normal(size=shape_in) * 100).astype(np.float32)
    ours = cubic_resize(volume.copy(), shape_out)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, resize(volume, shape_out, 3, mode="edge", anti_aliasing=False))


def test_a_step_is_clipped_to_the_input_range_as_scikit_image_clips_it():
    volume = np.zeros((12, 12, 12), dtype=np.float32)
    volume[:, :, 6:] = 1000.0                                 # the spline over- and undershoots at the step
    ours = cubic_resize(volume, (12, 12, 29))
    assert ours.min() == 0.0 and ours.max() == 1000.0
    assert np.array_equal(ours, resize(volume, (12, 12, 29), 3, mode="edge", anti_aliasing=False))


def test_in_plane_resizing_equals_scikit_image_slice_by_slice():
    """nnU-Net's anisotropic path resizes each slice on its own (and clips it to that slice's range)."""
    volume = np.random.default_rng(1).normal(size=(6, 21, 18)).astype(np.float32)
    volume[2] *= 50.0                                         # slices with different ranges
    ours = cubic_resize(volume, (6, 9, 25), axes=(1, 2))
    theirs = np.stack([resize(s, (9, 25), 3, mode="edge", anti_aliasing=False) for s in volume])
    assert np.array_equal(ours, theirs)


def test_weights_are_a_partition_of_unity_and_taps_stay_inside_the_padding():
    index, weight = cubic_taps(10, 37)
    assert np.allclose(weight.sum(1), 1.0) and (weight >= 0).all()
    assert index.min() >= 0 and index.max() < 10 + 2 * 12


def test_bad_shapes_are_refused():
    volume = np.zeros((4, 5, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="keep their size"):
        cubic_resize(volume, (3, 5, 6), axes=(1, 2))
    with pytest.raises(ValueError, match="empty axis"):
        cubic_resize(volume, (0, 5, 6))
