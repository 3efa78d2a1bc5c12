"""``radai train lesion-roi``: train the interactive lesion model on synthetic lesions (CPU, resumable).

Network: MONAI 3D U-Net, 5 input channels (:data:`.prompts.CHANNELS`: image, include points, exclude
points, box, previous outline), 1 output logit, on ``64³`` crops. Loss: soft Dice + BCE against the lesion's
occupancy (a soft target, so that p = 0.5 sits on the boundary). bf16 autocast with channels-last tensors
on CPUs that have bf16 matrix units, fp32 elsewhere.

The simulated reader (:mod:`.interaction`) trains the model to use clicks: for most batches the model first
predicts from the initial prompt, then 1–3 clicks are placed in the largest error region of its own
prediction (include where it missed lesion, exclude where it over-segmented) with its prediction as the
``previous`` channel, and the loss is taken after the last click. Some batches start instead from a degraded
reference outline (a reader's rough outline to refine).

Training is resumable (Ctrl+C or SIGTERM ends a sitting after saving): the full state (network, optimiser, step,
best checkpoint, random streams) is saved
atomically to ``<out>/training/state.pt`` every few minutes and at the end of a sitting; ``--resume``
continues the same cosine schedule over ``--steps``. ``--from-model DIR`` starts a new run from a shipped model
folder's weights (SHA-256 verified) and its recorded step count, with fresh optimiser moments: a later
sitting needs nothing but the repository. The checkpoint kept in ``model.pt`` is the best on
held-aside synthetic validation cases (never on real cases).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from ..atomic import atomic_path
from .interaction import next_click
from .prompts import GRID, point_channel

NETWORK = {"name": "monai.networks.nets.UNet",
           "parameters": {"spatial_dims": 3, "in_channels": 5, "out_channels": 1,
                          "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 1}}
CLICK_ROUNDS_PROBABILITY = (0.35, 0.2, 0.2, 0.25)     # P(0, 1, 2, 3 simulated clicks) per batch
REFINE_PROBABILITY = 0.1                               # batches that start from a degraded reference outline
VALIDATION_CASES = 48
PEAK_LEARNING_RATE = 2e-3
WARMUP_STEPS = 300


def build_network() -> torch.nn.Module:
    from monai.networks.nets import UNet
    return UNet(**NETWORK["parameters"])


def bf16_available() -> bool:
    """bf16 autocast pays off on CPUs with bf16 instructions (AMX / AVX-512 BF16); fp32 elsewhere."""
    from ..device import resolve_cpu_precision
    return resolve_cpu_precision("auto") == "bf16"


class SyntheticStream(torch.utils.data.IterableDataset):
    """Endless synthetic cases (input, soft target), randomly flipped along each axis."""

    def __init__(self, seed: int, sitting: int, grid: int, extra_backgrounds: Sequence[Path]) -> None:
        self.seed, self.sitting, self.grid, self.extra = seed, sitting, grid, list(extra_backgrounds)

    def __iter__(self):
        from .backgrounds import load_backgrounds
        from .synthetic import make_case
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.sitting, info.id if info else 0])
        backgrounds = load_backgrounds(self.extra)
        while True:
            case = make_case(backgrounds, rng, self.grid)
            x, target = case.x, case.target
            for axis in range(3):
                if rng.random() < 0.5:
                    x, target = np.flip(x, axis + 1), np.flip(target, axis)
            yield torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(target)[None])


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    probability = torch.sigmoid(logits)
    dims = (1, 2, 3, 4)
    intersection = (probability * target).sum(dim=dims)
    dice = 1.0 - (2.0 * intersection + 1.0) / (probability.sum(dim=dims) + target.sum(dim=dims) + 1.0)
    return dice.mean() + torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


def predict_logits(network: torch.nn.Module, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return network(x.contiguous(memory_format=torch.channels_last_3d)).float()


def degrade_outline(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rough reader's outline of ``reference``: dilated or eroded by 1–3 voxels and shifted by up to 2."""
    iterations = int(rng.integers(1, 4))
    outline = ndimage.binary_dilation(reference, iterations=iterations) if rng.random() < 0.5 else \
        ndimage.binary_erosion(reference, iterations=iterations)
    if not outline.any():
        outline = reference
    return np.roll(outline, tuple(int(v) for v in rng.integers(-2, 3, 3)), axis=(0, 1, 2))


def simulate_reader(network: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, rounds: int, bf16: bool,
                    rng: np.random.Generator) -> torch.Tensor:
    """Input after ``rounds`` simulated clicks on the model's own predictions (channels 1, 2 and 4 updated)."""
    x = x.clone()
    reference = (target[:, 0] >= 0.5).numpy()
    grid = x.shape[-1]
    if rng.random() < REFINE_PROBABILITY:
        for b in range(len(x)):
            x[b, 4] = torch.from_numpy(degrade_outline(reference[b], rng).astype(np.float32))
    for _ in range(rounds):
        with torch.no_grad():
            prediction = torch.cat([predict_logits(network, x[i:i + 8], bf16) > 0
                                    for i in range(0, len(x), 8)]).numpy()[:, 0]
        for b in range(len(x)):
            click = next_click(prediction[b], reference[b])
            x[b, 4] = torch.from_numpy(prediction[b].astype(np.float32))
            if click is None:
                continue
            channel = 1 if click.include else 2
            x[b, channel] = torch.maximum(x[b, channel], torch.from_numpy(point_channel([click.index_kji], grid)))
    return x


def validation_cases(seed: int, grid: int, extra_backgrounds: Sequence[Path], count: int = VALIDATION_CASES) -> list:
    from .backgrounds import load_backgrounds
    from .synthetic import make_case
    rng = np.random.default_rng([10_000, seed])
    backgrounds = load_backgrounds(extra_backgrounds)
    return [make_case(backgrounds, rng, grid) for _ in range(count)]


def validation_fingerprint(cases: list) -> str:
    """SHA-256 of the validation cases' targets and inputs (inputs rounded to 1e-3: BLAS may differ in the
    last bit). A change in how the image is rendered (its slices, say) changes the cases as much as a change
    in the lesions: scores from before are then not comparable."""
    import hashlib
    digest = hashlib.sha256()
    for case in cases:
        digest.update(case.target.tobytes())
        digest.update(np.round(case.x, 3).tobytes())
    return digest.hexdigest()


def validate(network: torch.nn.Module, cases: list, bf16: bool) -> dict:
    """Synthetic validation: Dice without clicks and after 3 simulated clicks, and the occupancy-volume error."""
    network.eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.stack([c.x for c in cases]))
    target = torch.from_numpy(np.stack([c.target for c in cases])[:, None])
    reference = target[:, 0].numpy() >= 0.5
    scores = {}
    with torch.no_grad():
        for rounds in (0, 3):
            batch_x = simulate_reader(network, x, target, rounds, bf16, rng) if rounds else x
            probability = torch.sigmoid(torch.cat([predict_logits(network, batch_x[i:i + 8], bf16)
                                                   for i in range(0, len(batch_x), 8)])).numpy()[:, 0]
            prediction = probability >= 0.5
            dice = 2 * (prediction & reference).sum(axis=(1, 2, 3)) / (prediction.sum(axis=(1, 2, 3))
                                                                       + reference.sum(axis=(1, 2, 3)) + 1e-6)
            scores[f"dice_{rounds}_clicks"] = float(dice.mean())
            if rounds == 0:
                volume_error = probability.sum(axis=(1, 2, 3)) / target.numpy().sum(axis=(1, 2, 3, 4)) - 1
                scores["soft_volume_error_median_abs"] = float(np.median(np.abs(volume_error)))
    network.train()
    scores["score"] = (scores["dice_0_clicks"] + scores["dice_3_clicks"]) / 2.0
    return scores


def learning_rate(step: int, total_steps: int) -> float:
    if step < WARMUP_STEPS:
        return PEAK_LEARNING_RATE * (step + 1) / WARMUP_STEPS
    progress = min((step - WARMUP_STEPS) / max(total_steps - WARMUP_STEPS, 1), 1.0)
    return PEAK_LEARNING_RATE * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def state_from_model(folder: Path, network: torch.nn.Module) -> dict:
    """Load a lesion-roi 2.x model folder's weights into ``network``; the run's counters from its card."""
    import json
    from ..errors import InputError
    from ..models.loaders import load_model_folder
    card_path = Path(folder) / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if card.get("task") != "promptable-lesion" or card.get("network") != {**NETWORK, "format": "state_dict"}:
        raise InputError(f"{folder} is not a lesion-roi 2.x model folder (card.json with this network: "
                         f"{NETWORK['name']}, {NETWORK['parameters']['in_channels']} channels); give "
                         "Resources/Models/lesion-roi or a folder written by `radai train lesion-roi`.")
    network.load_state_dict(load_model_folder(folder).network.state_dict())      # SHA-256 checked on load
    metrics = card.get("metrics", {})
    return {"step": int(metrics.get("training_steps", 0)), "sittings": int(metrics.get("sittings", 0)),
            "minutes": float(metrics.get("training_minutes", 0.0)), "from_model": card.get("version", "?")}


def train(out_dir: Path, total_steps: int = 40_000, minutes: float = 60.0, seed: int = 0, threads: int = 1,
          batch_size: int = 4, grid: int = GRID, resume: bool = False, validate_every: int = 500,
          checkpoint_minutes: float = 10.0, extra_backgrounds: Sequence[Path] = (),
          log: Callable[[str], None] = print, max_steps: Optional[int] = None,
          validation_count: int = VALIDATION_CASES, from_model: Optional[Path] = None) -> dict:
    """One sitting of training (until ``minutes`` pass, ``total_steps`` are done, or ``max_steps`` more steps);
    writes ``model.pt`` + ``card.json`` (best checkpoint so far) and the resumable state. Returns the metrics."""
    from .card import write_model
    out_dir = Path(out_dir)
    state_path = out_dir / "training" / "state.pt"
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    bf16 = bf16_available()
    network = build_network().to(memory_format=torch.channels_last_3d)
    optimiser = torch.optim.AdamW(network.parameters(), lr=PEAK_LEARNING_RATE, weight_decay=1e-5)
    state = {"step": 0, "sittings": 0, "minutes": 0.0, "best": {"score": -1.0}, "best_network": None, "history": []}
    if resume:
        if not state_path.exists():
            from ..errors import InputError
            raise InputError(f"No training state at {state_path} to resume; start without --resume.")
        state = torch.load(state_path, weights_only=True)
        network.load_state_dict(state.pop("network"))
        optimiser.load_state_dict(state.pop("optimiser"))
        log(f"resumed at step {state['step']} (best synthetic score {state['best']['score']:.3f})")
    elif from_model is not None:
        if state_path.exists():
            from ..errors import InputError
            raise InputError(f"{state_path} holds a run already: continue it with --resume, or choose another --out.")
        state.update(state_from_model(Path(from_model), network))
        previous = Path(from_model) / "previous"              # the version the evaluation compares against
        if previous.is_dir() and not (out_dir / "previous").exists():
            import shutil
            partial = out_dir / ".previous.partial"           # copied whole, then renamed: never half a folder
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(previous, partial)
            partial.rename(out_dir / "previous")
        log(f"started from {from_model} (lesion-roi {state['from_model']}, step {state['step']}); "
            "the optimiser's moments start afresh")
    state["sittings"] += 1
    rng = np.random.default_rng([seed, state["sittings"], 7])
    validation = validation_cases(seed, grid, extra_backgrounds, validation_count)
    fingerprint = validation_fingerprint(validation)
    if state["step"] and state.get("validation_fingerprint") != fingerprint:
        log("the synthetic validation cases changed (generator or backgrounds): earlier scores are not "
            "comparable, the best checkpoint is chosen afresh from here")
        state["best"] = {"score": -1.0}
    state["validation_fingerprint"] = fingerprint
    loader = torch.utils.data.DataLoader(SyntheticStream(seed, state["sittings"], grid, extra_backgrounds),
                                         batch_size=batch_size, num_workers=1, persistent_workers=True,
                                         prefetch_factor=4)
    started = last_checkpoint = time.monotonic()
    first_step = state["step"]

    def save(final: bool = False) -> None:
        state["minutes"] += (time.monotonic() - save.mark) / 60.0
        save.mark = time.monotonic()
        _save_state(state_path, {**state, "network": network.state_dict(), "optimiser": optimiser.state_dict()})
        if state["best_network"] is not None and (final or state.get("model_dirty")):
            write_model(state["best_network"], out_dir, {**state["best"], "training_steps": state["step"],
                                                         "training_minutes": round(state["minutes"], 1),
                                                         "training_seed": seed, "sittings": state["sittings"],
                                                         "bf16": bf16}, NETWORK)
            state["model_dirty"] = False
    save.mark = time.monotonic()

    network.train()
    import signal
    stop = {"requested": False}

    def request_stop(signum, frame):          # SIGTERM / Ctrl+C: finish the step, save, exit cleanly
        stop["requested"] = True
    previous_handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    for x, target in loader:
        if stop["requested"]:
            log(f"stop requested at step {state['step']}: saving the state")
            break
        step = state["step"]
        if (step >= total_steps or time.monotonic() - started > minutes * 60.0
                or (max_steps is not None and step - first_step >= max_steps)):
            break
        rounds = int(rng.choice(4, p=CLICK_ROUNDS_PROBABILITY))
        if rounds or rng.random() < REFINE_PROBABILITY:
            network.eval()
            x = simulate_reader(network, x, target, rounds, bf16, rng)
            network.train()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, total_steps)
        loss = dice_bce_loss(predict_logits(network, x, bf16), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
        optimiser.step()
        state["step"] = step + 1
        if state["step"] % validate_every == 0 or state["step"] == total_steps:
            scores = validate(network, validation, bf16)
            scores["step"] = state["step"]
            state["history"].append(scores)
            log(f"step {state['step']} {(time.monotonic() - started) / 60:.1f} min loss {loss.item():.3f} "
                + " ".join(f"{k} {v:.3f}" for k, v in scores.items() if k != "step"))
            if scores["score"] > state["best"]["score"]:
                state["best"] = {**scores}
                state["best_network"] = {k: v.detach().clone() for k, v in network.state_dict().items()}
                state["model_dirty"] = True
        if time.monotonic() - last_checkpoint > checkpoint_minutes * 60.0:
            save()
            last_checkpoint = time.monotonic()
    for sig, handler in previous_handlers.items():
        signal.signal(sig, handler)
    if state["best_network"] is None:
        scores = validate(network, validation, bf16)
        state["best"] = {**scores, "step": state["step"]}
        state["best_network"] = {k: v.detach().clone() for k, v in network.state_dict().items()}
    save(final=True)
    return {**state["best"], "training_steps": state["step"], "training_minutes": round(state["minutes"], 1)}
