"""Launch planning for the fused seed-layer kernel: block sizes and grid for a shape, and how many programs one
SM holds at once (from the compiled kernel's registers and shared memory), so the grid is one full wave.

Plain arithmetic over Triton's helpers and the CUDA device properties: nothing here launches a kernel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton


@dataclass(frozen=True)
class LaunchPlan:
    block_n: int  # rows per loop step: num_warps · rows_per_thread (the warps split the rows)
    block_s: int
    block_c: int
    block_r: int
    cols_per_thread: int
    num_warps: int
    acc_rows: int
    g_tile: int  # row groups folded per step of the final telemetry reduction
    seed_blocks: int
    row_groups: int
    row_iters: int

    @property
    def grid(self) -> tuple[int, int]:
        return (self.seed_blocks, self.row_groups)


# The adapters live in registers for the whole program: 2·BLOCK_R·COLS_PER_THREAD fp32 values.
WEIGHT_REGISTERS = 64


def launch_plan(
    n: int,
    s: int,
    c: int,
    r: int,
    elem_bytes: int,
    sm_count: int,
    *,
    rows_per_thread: int = 4,
    num_warps: int = 4,
    programs_per_sm: int = 4,
    cols_per_thread: int | None = None,
    fold_rows: bool = True,
) -> LaunchPlan:
    """Block sizes and grid for an (n, s·c) activation with rank-r adapters.

    Columns: one warp spans the block, each lane owning ``cols_per_thread`` adjacent columns (a
    vector of at most 16 bytes and 4 columns, 2 when r = 16, so that the adapters fit in registers).
    Rows: the warps split each step's rows, so a thread's telemetry folds its own rows without
    shuffles and a program writes one partial per seed for all its warps. Row groups: as many as
    fit ``programs_per_sm`` programs on every SM at once (one wave, no tail) — each extra group
    costs one more telemetry partial.
    """
    block_c = triton.next_power_of_2(max(c, 1))
    block_r = triton.next_power_of_2(max(r, 1))
    if cols_per_thread is None:
        cols_per_thread = max(1, min(4, 16 // elem_bytes, WEIGHT_REGISTERS // (2 * block_r)))
    block_n = num_warps * rows_per_thread
    block_s = max(1, min(triton.next_power_of_2(s), cols_per_thread * 32 // block_c))
    seed_blocks = triton.cdiv(s, block_s)
    row_blocks = max(1, triton.cdiv(n, block_n))
    row_groups = min(row_blocks, max(1, (sm_count * programs_per_sm) // seed_blocks))
    row_iters = triton.cdiv(row_blocks, row_groups)
    row_groups = triton.cdiv(row_blocks, row_iters)
    acc_rows = num_warps if fold_rows else block_n
    # One L2 round trip per step of the final fold; 8 values per thread and field keep its
    # registers below the main loop's (more would lower the occupancy of the whole kernel).
    g_tile = max(1, min(32, 8 * 32 * num_warps // block_s))
    return LaunchPlan(
        block_n=block_n,
        block_s=block_s,
        block_c=block_c,
        block_r=block_r,
        cols_per_thread=cols_per_thread,
        num_warps=num_warps,
        acc_rows=acc_rows,
        g_tile=g_tile,
        seed_blocks=seed_blocks,
        row_groups=row_groups,
        row_iters=row_iters,
    )


@functools.cache
def device_limits(device_index: int) -> tuple[int, int, int]:
    """(SMs, max threads per SM, shared memory bytes per SM)."""
    p = torch.cuda.get_device_properties(device_index)
    threads = int(getattr(p, "max_threads_per_multi_processor", 2048))
    smem = int(getattr(p, "shared_memory_per_multiprocessor", 228 * 1024))
    return int(p.multi_processor_count), threads, smem


def sm_count(device_index: int) -> int:
    return device_limits(device_index)[0]


def resident_programs(
    n_regs: int, shared_bytes: int, num_warps: int, max_threads: int, smem_per_sm: int
) -> int:
    """Programs of num_warps warps that one SM holds at once (4 sub-partitions of 16K registers each,
    registers allocated per warp in units of 256; 1 KiB of shared memory reserved per block)."""
    regs_per_warp = -(-max(n_regs, 1) * 32 // 256) * 256
    by_regs = (16384 // regs_per_warp) * 4 // num_warps
    by_threads = max_threads // (32 * num_warps)
    by_smem = smem_per_sm // (shared_bytes + 1024) if shared_bytes else 32
    return max(1, min(by_regs, by_threads, by_smem, 32))
