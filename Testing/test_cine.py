"""Cine MRI as a time series: the cardiac phantom as a 4D NIfTI and as a multi-phase DICOM series read back into
phases on one grid, and every way a cine can be incomplete refused with a :class:`CineError` naming it."""
from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

from cine_fixtures import phantom_cine, write_cine_dicom
from RadAISegmentLib.cine import CineError, CineSeries, read_cine, write_cine
from RadAISegmentLib.errors import InputError
from RadAISegmentLib.io import write_image


@pytest.fixture(scope="module")
def cine():
    """8 phases of the short-axis phantom (oblique grid, 96×96×52 at 1.5×1.5×2.5 mm), 60 bpm."""
    return phantom_cine(8)


def assert_same_phases(series: CineSeries, images) -> None:
    assert len(series.phases) == len(images)
    for phase, image in zip(series.phases, images):
        assert phase.same_grid(image, tolerance=1e-4), phase.grid_difference(image)
        assert np.array_equal(phase.array, image.array)


def test_4d_nifti_round_trip_keeps_grid_voxels_and_trigger_times(cine, tmp_path):
    images, _, truth = cine
    path = write_cine(images, tmp_path / "cine.nii.gz", truth["times_ms"])
    assert sitk.ReadImage(str(path)).GetDimension() == 4
    series = read_cine(path)
    assert_same_phases(series, images)
    assert series.times_ms == pytest.approx(truth["times_ms"], abs=1e-3)          # stored in s, read back in ms


@pytest.mark.parametrize("temporal_ids", [True, False])
def test_multiphase_dicom_series_groups_phases_by_timing_not_file_order(cine, tmp_path, temporal_ids):
    """One MR file per slice and phase, file names scrambled, trigger times jittered per slice by up to 1.5 ms
    (as scanners write them): phases come from TemporalPositionIdentifier, or from TriggerTime without it."""
    images, _, truth = cine
    folder = write_cine_dicom(images, tmp_path / "dicom", truth["times_ms"], temporal_ids=temporal_ids,
                              names="shuffled")
    series = read_cine(folder)
    assert_same_phases(series, images)
    assert series.times_ms == pytest.approx(truth["times_ms"], abs=1.5)
    assert series.heart_rate_bpm == 60.0 and series.phases[0].metadata["modality"] == "MR"


def test_missing_slices_and_phases_are_refused_naming_them(cine, tmp_path):
    """Each incomplete export of a 12-slice stack (8 phases) fails with a message naming what is missing."""
    full, _, truth = cine
    images = [type(image)(image.array[20:32], image.spacing_mm, image.index_to_lps(np.array([[0.0, 0.0, 20.0]]))[0],
                          image.direction_lps) for image in full]
    times = truth["times_ms"]
    slice_at = float(images[0].index_to_lps(np.array([[0.0, 0.0, 5.0]]))[0] @ images[0].direction_lps[:, 2])
    cases = {
        "one image gone": (dict(skip={(5, 3)}), r"slice at (-?[\d.]+) mm has 7 phases.*TemporalPositionIdentifier 4\)"),
        "a phase gone, by id": (dict(skip={(k, 3) for k in range(12)}), r"temporal positions 4 are missing"),
        "a phase gone, by time": (dict(skip={(k, 3) for k in range(12)}, temporal_ids=False),
                                  rf"no phase between trigger times ({times[2]:.0f}|{times[2] + 1:.0f}) and "
                                  rf"({times[4]:.0f}|{times[4] + 1:.0f}) ms"),
        "last phase gone": (dict(skip={(k, 7) for k in range(12)}, temporal_ids=False), r"header says 8 cardiac phases"),
        "a slice gone": (dict(skip={(6, p) for p in range(8)}), r"missing slice\(s\) between"),
    }
    for name, (options, message) in cases.items():
        folder = write_cine_dicom(images, tmp_path / name.replace(" ", "_").replace(",", ""), times, **options)
        with pytest.raises(CineError, match=message) as error:
            read_cine(folder)
        if name == "one image gone":                              # the slice named is the one left incomplete
            assert abs(float(re.search(message, str(error.value)).group(1)) - slice_at) < 0.06
    write_image(images[0], tmp_path / "one.nii.gz")
    with pytest.raises(CineError, match="single 3D volume"):
        read_cine(tmp_path / "one.nii.gz")
    with pytest.raises(InputError, match="No such cine"):
        read_cine(tmp_path / "absent")
    moved = images[1].with_array(images[1].array)
    moved = type(moved)(moved.array, moved.spacing_mm, (1.0, 2.0, 3.0), moved.direction_lps)
    with pytest.raises(CineError, match="different voxel grid"):
        CineSeries((images[0], moved))
