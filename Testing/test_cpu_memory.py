"""Memory settings of an inference process (:mod:`RadAISegmentLib.cpu_memory`): glibc's fixed mmap threshold
and PyTorch's transparent-huge-page allocation, set by the ``radai`` command before PyTorch loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# glibc: after a 20 MB block is freed, the dynamic threshold is 20 MB and a 4 MB block comes from the heap
# (not returned when freed); inside a window loop it is mapped on its own and returned; after the loop the
# threshold is glibc's ceiling again.
PROBE = r"""
import ctypes, json, sys
from RadAISegmentLib import cpu_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
def mapped_after_a_large_free():
    libc.free(libc.malloc(20 << 20))
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped
if sys.argv[1] == "tuned":
    with cpu_memory.returning_freed_blocks() as tuned:
        inside = mapped_after_a_large_free()
    print(json.dumps({"tuned": tuned, "mapped_blocks": inside, "after_loop": mapped_after_a_large_free()}))
else:
    print(json.dumps({"tuned": False, "mapped_blocks": mapped_after_a_large_free()}))
"""


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _has_mallinfo2() -> bool:
    import ctypes
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(),
                    reason="glibc's mallopt and mallinfo2 (glibc >= 2.33): Linux only")
def test_freed_mid_sized_blocks_go_back_to_the_system_inside_a_window_loop_only():
    assert probe("default") == {"tuned": False, "mapped_blocks": 0}      # glibc's own policy: kept in the heap
    assert probe("tuned") == {"tuned": True, "mapped_blocks": 1, "after_loop": 0}


def test_a_threshold_the_user_fixed_is_kept(monkeypatch):
    from RadAISegmentLib import cpu_memory
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    with cpu_memory.returning_freed_blocks() as applied:
        assert applied is False


def test_huge_pages_are_asked_for_unless_the_user_chose(monkeypatch):
    from RadAISegmentLib import cpu_memory
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    cpu_memory.tune_cpu_memory()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    cpu_memory.tune_cpu_memory()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


def test_the_radai_command_tunes_memory_before_pytorch_loads():
    """PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once, at its first allocation: ``radai`` sets it first."""
    label = Path(__file__).parent / "Data" / "lung1_label.nrrd"
    code = ("import os, sys; from RadAIVolumetricsLib import cli; "
            "import RadAISegmentLib.cpu_memory as m; "
            "m.tune_cpu_memory = (lambda f: lambda: (print('torch' in sys.modules, flush=True), f()))(m.tune_cpu_memory); "
            f"code = cli.main(['info', {str(label)!r}, '--json']); print(code); print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    environment = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "False", done.stdout + done.stderr
    assert lines[-2:] == ["0", "1"], done.stdout + done.stderr
