"""What the CPU step-efficiency figures rest on: attention counted in the FLOPs, freed memory reused."""

import subprocess
import sys

import pytest
import torch

from myjepa.models.vit import Block
from myjepa.utils.flops import count_flops


def test_attention_flops_are_counted_on_the_cpu():
    B, N, D, H = 2, 10, 16, 4
    block = Block(D, H, mlp_ratio=2.0)
    x = torch.randn(B, N, D, requires_grad=True)
    linears = 2 * B * N * (D * 3 * D + D * D + 2 * D * 2 * D)  # qkv, proj, fc1 + fc2
    attention = 2 * 2 * B * H * N * N * (D // H)  # q·kᵀ and p·v
    assert count_flops(lambda: block(x)) == linears + attention
    # backward: two products per linear, and flash attention's five (the scores are recomputed)
    assert count_flops(lambda: block(x).sum().backward()) == 3 * linears + attention + 5 * attention // 2


FAULTS_OF_A_REALLOCATION = """
import resource, sys, torch
from myjepa.utils.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(30):  # as training does: the same large tensors allocated and freed every step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(40 * 2**20 // 4)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_training_memory_is_reused_not_faulted_in_again():
    def faults(mode: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REALLOCATION, mode], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return [int(n) for n in out.stdout.split()]

    plain, kept = faults("plain"), faults("keep")
    # glibc maps a 40 MiB block afresh each time and unmaps it when freed: every page faults in again
    # (10,240 pages of 4 KiB; 20 of 2 MiB where transparent huge pages are always on)
    assert min(plain[-4:]) >= 20, plain
    # kept: once malloc has settled (a few rounds), a new block reuses the pages of freed ones
    assert sum(kept[-4:]) <= 16, kept
