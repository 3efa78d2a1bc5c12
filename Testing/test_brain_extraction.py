"""The shipped brain-extraction card (deepbet's networks + reproduced preprocessing) on real Colin27."""
from __future__ import annotations

import numpy as np
import pytest

from RadAISegmentLib.errors import ChecksumError
from RadAISegmentLib.image import Image
from RadAISegmentLib.inference import load_model, segment_image
from RadAISegmentLib.io import read_image
from RadAISegmentLib.models.cache import find_model, verify_weights, weights_path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_colin27_brain_extraction_dice_and_axis_order_invariance(colin27):
    image_path, truth_path = colin27
    image = read_image(image_path)
    truth = read_image(truth_path).array > 0
    model = load_model("brain-extraction")
    assert model.card.weights["package"] == "deepbet" and model.card.labels[0].name == "Brain"
    mask = segment_image(image, model, device="cpu")
    assert mask.same_grid(image) and mask.segments[0].type.meaning == "Brain"
    score = dice(mask.array > 0, truth)
    assert score >= 0.93, f"Dice {score:.4f} < 0.93 on Colin27"
    assert abs(score - model.card.metrics["colin27_dice"]) < 0.005, "the card's measured Dice is out of date"
    # the same head stored with i and j swapped (direction columns swapped): identical physical mask
    swapped = Image(image.array.transpose(0, 2, 1), (image.spacing_mm[1], image.spacing_mm[0], image.spacing_mm[2]),
                    image.origin_lps, image.direction_lps[:, [1, 0, 2]], metadata=image.metadata)
    swapped_mask = segment_image(swapped, model, device="cpu")
    assert np.array_equal(swapped_mask.array.transpose(0, 2, 1), mask.array)


def test_brain_extraction_weights_are_checksummed(tmp_path):
    card = find_model("brain-extraction")
    path = weights_path(card)
    assert path.name == "model.pt" and path.parent.name == "models" and path.is_file()
    copy = tmp_path / "model.pt"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        verify_weights(card, copy)
