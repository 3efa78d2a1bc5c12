"""What runs an organ model's network on the CPU (``RadAISegmentLib.cpu_runtime``): OpenVINO where installed,
PyTorch otherwise; a network OpenVINO cannot convert, or converts into something else (tracing bakes
input-dependent Python into constants), runs in PyTorch with a warning, never silently wrong."""
from __future__ import annotations

import pytest
import torch

from RadAISegmentLib.cpu_runtime import resolve_runtime, runtime_network
from RadAISegmentLib.device import DeviceChoice, precision_report
from RadAISegmentLib.errors import InputError

CPU = DeviceChoice(torch.device("cpu"), torch.device("cpu"), False)
GPU = DeviceChoice(torch.device("cuda"), torch.device("cpu"), True)


def small_network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.InstanceNorm3d(4, affine=True),
                               torch.nn.LeakyReLU(), torch.nn.Conv3d(4, 3, 1)).eval()


class RefusesTracing(torch.nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing():
            raise RuntimeError("this network cannot be traced")
        return x * 2.0


class InputDependentBranch(torch.nn.Module):
    """Python control flow on the input's values: a trace at zeros records only one branch."""
    def forward(self, x):
        return x * 3.0 if float(x.abs().sum()) > 0 else x + 1.0


def test_auto_is_openvino_on_the_cpu_and_torch_on_a_gpu():
    assert resolve_runtime("auto", CPU) == "openvino"
    assert resolve_runtime("auto", CPU, auto_openvino=False) == "torch"          # MONAI bundles
    assert resolve_runtime("openvino", CPU, auto_openvino=False) == "openvino"
    assert resolve_runtime("auto", GPU) == "torch"
    assert resolve_runtime("torch", CPU) == "torch"
    with pytest.raises(InputError, match="CPU only"):
        resolve_runtime("openvino", GPU)
    with pytest.raises(InputError, match="Unknown runtime"):
        resolve_runtime("tensorrt", CPU)


def test_without_openvino_auto_falls_back_and_an_explicit_request_says_what_to_install(monkeypatch):
    import RadAISegmentLib.cpu_runtime as cpu_runtime
    monkeypatch.setattr(cpu_runtime, "openvino_installed", lambda: False)
    assert cpu_runtime.resolve_runtime("auto", CPU) == "torch"
    with pytest.raises(InputError, match="pip install openvino"):
        cpu_runtime.resolve_runtime("openvino", CPU)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_openvino_network_computes_what_torch_computes(bf16):
    network = small_network()
    choice = CPU.with_precision("bf16" if bf16 else "fp32").with_runtime("openvino")
    runnable, used = runtime_network(network, choice, (2, 1, 16, 16, 16))
    assert used.runtime == "openvino" and runnable is not network
    x = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))   # another batch size too
    with torch.no_grad():
        expected = network(x)
    relative = float(torch.linalg.vector_norm(runnable(x) - expected) / torch.linalg.vector_norm(expected))
    assert relative < (3e-2 if bf16 else 1e-5)
    assert precision_report(used).startswith("bf16 (OpenVINO, ") if bf16 else precision_report(used) == "fp32 (OpenVINO)"
    assert runtime_network(network, choice, (2, 1, 16, 16, 16))[0] is runnable         # converted once


@pytest.mark.parametrize("network", [RefusesTracing(), InputDependentBranch()], ids=["refuses", "branch"])
def test_a_network_openvino_gets_wrong_runs_in_torch_with_a_warning(network):
    warnings = []
    runnable, used = runtime_network(network, CPU.with_runtime("openvino"), (1, 1, 8, 8, 8), warnings.append)
    assert runnable is network and used.runtime == "torch" and precision_report(used) == "fp32"
    assert len(warnings) == 2 and warnings[0].startswith("Converting the network for OpenVINO")
    assert "running it in PyTorch" in warnings[1]


def test_a_verified_conversion_is_kept_and_reused_and_a_damaged_one_redone(tmp_path, monkeypatch):
    """Converting costs seconds (trace, convert, probe): the verified conversion is kept in the models cache,
    keyed by the network's weights; the same weights in a new process (here: a new module) reuse it, other
    weights do not, and an unreadable entry is converted again."""
    import RadAISegmentLib.cpu_runtime as cpu_runtime
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path))
    choice = CPU.with_runtime("openvino")
    messages = []
    first, _ = runtime_network(small_network(), choice, (1, 1, 16, 16, 16), messages.append)
    assert messages == ["Converting the network for OpenVINO (first run only; kept in the models cache)..."]
    entries = list((tmp_path / ".openvino").iterdir())
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file() and (entries[0] / "model.bin").is_file()
    converted = []
    real_convert = cpu_runtime._convert
    monkeypatch.setattr(cpu_runtime, "_convert", lambda *a: converted.append(a) or real_convert(*a))
    x = torch.randn(1, 1, 16, 16, 16)
    again, used = runtime_network(small_network(), choice, (1, 1, 16, 16, 16), messages.append)  # same weights
    assert not converted and used.runtime == "openvino" and len(messages) == 1                 # kept: no message
    assert torch.equal(again(x), first(x))
    other = small_network()
    with torch.no_grad():
        other[0].weight.mul_(2.0)
    runtime_network(other, choice, (1, 1, 16, 16, 16))
    assert len(converted) == 1 and len(list((tmp_path / ".openvino").iterdir())) == 2
    (entries[0] / "model.xml").write_text("<damaged")
    network = small_network()
    repaired, used = runtime_network(network, choice, (1, 1, 16, 16, 16))
    assert len(converted) == 2 and used.runtime == "openvino"
    with torch.no_grad():
        assert torch.allclose(repaired(x), network(x), rtol=1e-4, atol=1e-5)


def test_instance_norms_over_a_large_window_are_as_exact_in_openvino_as_in_pytorch(tmp_path, monkeypatch):
    """OpenVINO's own instance norm sums a window's values in one float32 accumulator (~1e-4 relative error
    at 96³); the conversion writes it so that OpenVINO's logits are as close to float64 as PyTorch's."""
    import RadAISegmentLib.cpu_runtime as cpu_runtime
    monkeypatch.setenv("RADAI_MODELS_DIR", str(tmp_path))
    network = small_network()
    x = torch.nn.functional.avg_pool3d(torch.randn(1, 1, 104, 104, 104, generator=torch.Generator().manual_seed(2))
                                       * 3.0, 9, stride=1)                     # smooth, like an image: 96³
    with torch.no_grad():
        exact = network.double()(x.double())
        network.float()
        in_torch = network(x).double()
    runnable, used = runtime_network(network, CPU.with_runtime("openvino"), tuple(x.shape))
    assert used.runtime == "openvino"

    def error(logits):
        return float(torch.linalg.vector_norm(logits - exact) / torch.linalg.vector_norm(exact))
    assert error(runnable(x).double()) < max(3 * error(in_torch), 1e-6)
    prepared = cpu_runtime._for_conversion(network)
    assert isinstance(prepared[1], cpu_runtime._PreciseInstanceNorm)
    assert isinstance(network[1], torch.nn.InstanceNorm3d)                        # the original is untouched
    with torch.no_grad():
        assert torch.allclose(prepared(x), network(x), rtol=1e-5, atol=1e-5)
    tracked = torch.nn.Sequential(torch.nn.InstanceNorm3d(2, track_running_stats=True)).eval()
    assert isinstance(cpu_runtime._for_conversion(tracked)[0], torch.nn.InstanceNorm3d)   # running stats: as is
