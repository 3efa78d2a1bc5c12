"""Tiny 3D U-Net trained in the test session on synthetic spheres in noise (a few seconds on CPU),
so saliency maps have a target whose location is known exactly."""
from __future__ import annotations

import numpy as np
import torch

SPHERE_CARD = {"id": "tiny-spheres", "task": "segmentation",
               "labels": [{"label": 1, "name": "Sphere"}],
               "input": {"spacing_mm": [1.0, 1.0, 1.0], "patch_size": [32, 32, 32], "normalisation": {"kind": "none"}}}


def sphere_volume(rng: np.random.Generator, shape_kji, centre_kji, radius_vox: float, noise: float = 0.3):
    """Noise (sigma ``noise``) plus 1.0 inside a ball; returns ``(volume float32, mask bool)``."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_kji], indexing="ij")
    c = np.asarray(centre_kji, float)
    mask = (k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2 <= radius_vox ** 2
    return (rng.normal(0.0, noise, shape_kji) + mask).astype(np.float32), mask


class EncoderDecoder(torch.nn.Module):
    """A tiny 3D encoder-decoder WITHOUT skip connections (an "own model"): every decision passes
    through the 8^3 bottleneck, so bottleneck Grad-CAM must localise the target. (In a U-Net the
    skip connections can carry the whole decision and bottleneck Grad-CAM may highlight context.)"""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        conv = torch.nn.Conv3d
        self.encoder = torch.nn.Sequential(conv(in_channels, 8, 3, padding=1), torch.nn.ReLU(),
                                           conv(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())
        self.bottleneck = torch.nn.Sequential(conv(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                                              conv(16, 16, 3, padding=1), torch.nn.ReLU())
        self.decoder = torch.nn.Sequential(torch.nn.Upsample(scale_factor=4, mode="trilinear"),
                                           conv(16, 8, 3, padding=1), torch.nn.ReLU(), conv(8, 2, 1))

    def forward(self, x):
        return self.decoder(self.bottleneck(self.encoder(x)))


def train_tiny_unet(in_channels: int = 1, steps: int = 60, seed: int = 1, skip_connections: bool = False) -> torch.nn.Module:
    """A tiny segmentation net trained with cross-entropy on 32^3 sphere cases (a few seconds):
    :class:`EncoderDecoder`, or with ``skip_connections`` a 3-level MONAI UNet (channels 4/8/16).
    With ``in_channels=2`` the second channel is a Gaussian at the sphere centre (a prompt).

    Honest caveat: Grad-CAM keeps only positive evidence. Some trainings of this tiny net (e.g.
    seeds 0 and 2) encode the sphere by the ABSENCE of background features at the bottleneck;
    their Grad-CAM is all-zero (reported as ``all_zero`` in the metadata, as it should be). The
    default seed 1 was chosen because its bottleneck carries positive evidence."""
    from monai.networks.nets import UNet
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = (UNet(3, in_channels, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0) if skip_connections
               else EncoderDecoder(in_channels))
    optimiser = torch.optim.Adam(network.parameters(), 1e-2)
    # the sphere is ~2% of the voxels: weight it so the skip-free net does not collapse to background
    class_weight = None if skip_connections else torch.tensor([1.0, 5.0])
    grid = np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"))
    for _ in range(steps):
        inputs, targets = [], []
        for _ in range(4):
            radius = rng.uniform(3.5, 6.0)
            centre = rng.uniform(radius + 2, 32 - radius - 2, size=3)
            volume, mask = sphere_volume(rng, (32, 32, 32), centre, radius)
            channels = [volume]
            if in_channels == 2:
                channels.append(np.exp(-((grid - centre[:, None, None, None]) ** 2).sum(0) / 18.0).astype(np.float32))
            inputs.append(np.stack(channels))
            targets.append(mask)
        loss = torch.nn.functional.cross_entropy(network(torch.from_numpy(np.stack(inputs))),
                                                 torch.from_numpy(np.stack(targets)).long(), weight=class_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network.eval()
