"""Fused Triton forward of the chunked seed layer (one launch for every seed) plus its telemetry.

Semantics are those of ``reference.seed_layer_reference``. Layout of the work:

* grid = (seed blocks, row groups). A program owns BLOCK_S consecutive seeds, i.e. a contiguous
  span of BLOCK_V = BLOCK_S·BLOCK_C columns, wide enough that every thread of every warp sits
  along the columns with a 16-byte vector: rows stay inside each thread, so the per-column
  telemetry sums over rows need no shuffles or shared memory. When c is a power of two the span is
  the real columns (fully coalesced); otherwise c is padded to BLOCK_C with masks.
* The adapters of the program's seeds are loaded once, before the row loop, as (BLOCK_R, BLOCK_V)
  tiles ("rank × column"), so the bottleneck is a broadcast multiply with r in-thread: no tl.dot
  (r and c are far below its 16), no per-row reloads. A seed block with no live seed never loads
  its weights (dormant weights may be garbage/NaN); inside a live block dormant seeds' weight loads
  are masked off and their output is selected with where(), so NaN cannot leak either.
* Telemetry: each program reduces its rows in registers and writes one (5, BLOCK_S) partial; the
  last program of a seed block to finish (an atomic counter per seed block) sums that block's
  partials in a fixed order — deterministic, and no second launch. The counters reset themselves.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from kasmina_edge.host.kernels.reference import BLENDING_CODE, DORMANT_CODE, FOSSILIZED_CODE
from kasmina_edge.host.kernels.triton_launch import device_limits, launch_plan, resident_programs

N_FIELDS = 5
# Globals read inside @triton.jit must be constexpr.
_DORMANT: tl.constexpr = tl.constexpr(DORMANT_CODE)
_BLENDING: tl.constexpr = tl.constexpr(BLENDING_CODE)
_FOSSILIZED: tl.constexpr = tl.constexpr(FOSSILIZED_CODE)


@triton.jit
def _rank_row(tile, j: tl.constexpr, BLOCK_R: tl.constexpr):
    """Row j of a (BLOCK_R, BLOCK_V) weight tile held in registers (r in-thread: selects, no traffic).

    Loop-invariant, so the compiler hoists it out of the row loop."""
    rank = tl.arange(0, BLOCK_R)
    return tl.sum(tl.where((rank == j)[:, None], tile, 0.0), axis=0)


@triton.jit
def _bottleneck(
    x, wd_t, wu_t, live_col,
    R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """x (BLOCK_N, BLOCK_V) fp32 -> x + relu(x·W_down)·(α·W_up) on live columns, x elsewhere.

    Everything stays in the layout of the loaded tile: rank j is unrolled (R is tiny), and a seed's
    c columns are summed through a reshape that splits the column axis (c lies inside one thread)."""
    if BLOCK_C == 1:
        delta = tl.zeros_like(x)
        for j in tl.static_range(R):
            h = tl.maximum(x * _rank_row(wd_t, j, BLOCK_R)[None, :], 0.0)
            delta += h * _rank_row(wu_t, j, BLOCK_R)[None, :]
    else:
        x3 = tl.reshape(x, [BLOCK_N, BLOCK_S, BLOCK_C])
        delta3 = tl.zeros_like(x3)
        for j in tl.static_range(R):
            wd3 = tl.reshape(_rank_row(wd_t, j, BLOCK_R), [BLOCK_S, BLOCK_C])
            wu3 = tl.reshape(_rank_row(wu_t, j, BLOCK_R), [BLOCK_S, BLOCK_C])
            h = tl.maximum(tl.sum(x3 * wd3[None, :, :], axis=2), 0.0)  # (BLOCK_N, BLOCK_S)
            delta3 += h[:, :, None] * wu3[None, :, :]
        delta = tl.reshape(delta3, [BLOCK_N, BLOCK_S * BLOCK_C])
    return tl.where(live_col[None, :], x + delta, x)


# N and the loop bounds vary call to call: specialising on them (== 1, % 16) would only recompile.
@triton.jit(do_not_specialize=["N", "row_iters", "row_groups"])
def _seed_layer_fwd_kernel(
    x_ptr,
    out_ptr,
    stage_ptr,
    alpha_ptr,
    wd_ptr,
    wu_ptr,
    part_ptr,
    tel_ptr,
    count_ptr,
    N,
    S,
    row_iters,
    row_groups,
    dead_eps,
    C: tl.constexpr,
    R: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ACC_ROWS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_R: tl.constexpr,
    COLS_PER_THREAD: tl.constexpr,
    TELEMETRY: tl.constexpr,
    REDUCE: tl.constexpr,
    G_TILE: tl.constexpr,
):
    pid_s = tl.program_id(0)
    pid_g = tl.program_id(1)
    D = S * C
    BLOCK_V: tl.constexpr = BLOCK_S * BLOCK_C

    v = tl.arange(0, BLOCK_V)
    if BLOCK_C == C:
        # Power-of-two c: the block is BLOCK_V real, contiguous columns. The vector width is pinned:
        # wider vectors would put more weight columns in each thread's registers.
        cols = tl.max_contiguous(tl.multiple_of(pid_s * BLOCK_V + v, COLS_PER_THREAD), COLS_PER_THREAD)
        seed_of_col = cols // C
        k_of_col = cols % C
        col_ok = cols < D
    else:
        seed_of_col = pid_s * BLOCK_S + v // BLOCK_C
        k_of_col = v % BLOCK_C
        cols = seed_of_col * C + k_of_col
        col_ok = (seed_of_col < S) & (k_of_col < C)

    stage_col = tl.load(stage_ptr + seed_of_col, mask=col_ok, other=_DORMANT)
    live_col = stage_col != _DORMANT
    alpha_col = tl.load(alpha_ptr + seed_of_col, mask=col_ok & (stage_col == _BLENDING), other=0.0)
    a_col = tl.where(stage_col == _FOSSILIZED, 1.0, alpha_col.to(tl.float32))
    any_live = tl.max(live_col.to(tl.int32), axis=0) > 0

    # Running statistics per (accumulator row, column): ACC_ROWS = num_warps folds each thread's
    # own rows in registers (no shuffles); ACC_ROWS = BLOCK_N keeps whole tiles (no fold at all).
    t_sum = tl.zeros([ACC_ROWS, BLOCK_V], dtype=tl.float32)
    t_sq = tl.zeros([ACC_ROWS, BLOCK_V], dtype=tl.float32)
    t_min = tl.full([ACC_ROWS, BLOCK_V], float("inf"), dtype=tl.float32)
    t_max = tl.full([ACC_ROWS, BLOCK_V], float("-inf"), dtype=tl.float32)
    t_dead = tl.zeros([ACC_ROWS, BLOCK_V], dtype=tl.float32)
    row0 = pid_g * row_iters * BLOCK_N
    # Steps whose rows all lie below N need no row mask; with power-of-two c the columns past D
    # belong to seeds past S, whose statistics are dropped, so those steps' telemetry is unmasked.
    n_full = tl.minimum(tl.maximum((N - row0) // BLOCK_N, 0), row_iters)

    if any_live:
        j = tl.arange(0, BLOCK_R)
        w_mask = (j[:, None] < R) & (col_ok & live_col)[None, :]
        # W_down[s, k, j] and α·W_up[s, j, k] as (rank, column) tiles, read once per program.
        wd_t = tl.load(
            wd_ptr + (seed_of_col * (C * R) + k_of_col * R)[None, :] + j[:, None], mask=w_mask, other=0.0
        )
        wu_t = tl.load(
            wu_ptr + (seed_of_col * (R * C) + k_of_col)[None, :] + j[:, None] * C, mask=w_mask, other=0.0
        )
        wd_t = wd_t.to(tl.float32)
        wu_t = wu_t.to(tl.float32) * a_col[None, :]
        for it in range(0, n_full):
            t_sum, t_sq, t_min, t_max, t_dead = _step(
                x_ptr, out_ptr, row0 + it * BLOCK_N, N, D, cols, col_ok, wd_t, wu_t, live_col, dead_eps,
                t_sum, t_sq, t_min, t_max, t_dead,
                True, False, TELEMETRY, C, R, BLOCK_N, BLOCK_R, BLOCK_S, BLOCK_C, ACC_ROWS,
            )  # fmt: skip
        for it in range(n_full, row_iters):
            t_sum, t_sq, t_min, t_max, t_dead = _step(
                x_ptr, out_ptr, row0 + it * BLOCK_N, N, D, cols, col_ok, wd_t, wu_t, live_col, dead_eps,
                t_sum, t_sq, t_min, t_max, t_dead,
                True, True, TELEMETRY, C, R, BLOCK_N, BLOCK_R, BLOCK_S, BLOCK_C, ACC_ROWS,
            )  # fmt: skip
    else:
        for it in range(0, n_full):
            t_sum, t_sq, t_min, t_max, t_dead = _step(
                x_ptr, out_ptr, row0 + it * BLOCK_N, N, D, cols, col_ok, 0.0, 0.0, live_col, dead_eps,
                t_sum, t_sq, t_min, t_max, t_dead,
                False, False, TELEMETRY, C, R, BLOCK_N, BLOCK_R, BLOCK_S, BLOCK_C, ACC_ROWS,
            )  # fmt: skip
        for it in range(n_full, row_iters):
            t_sum, t_sq, t_min, t_max, t_dead = _step(
                x_ptr, out_ptr, row0 + it * BLOCK_N, N, D, cols, col_ok, 0.0, 0.0, live_col, dead_eps,
                t_sum, t_sq, t_min, t_max, t_dead,
                False, True, TELEMETRY, C, R, BLOCK_N, BLOCK_R, BLOCK_S, BLOCK_C, ACC_ROWS,
            )  # fmt: skip

    if TELEMETRY:
        _publish_telemetry(
            part_ptr, tel_ptr, count_ptr, pid_s, pid_g, row_groups, S,
            t_sum, t_sq, t_min, t_max, t_dead, BLOCK_S, BLOCK_C, REDUCE, G_TILE,
        )  # fmt: skip


@triton.jit
def _step(
    x_ptr, out_ptr, row_start, N, D, cols, col_ok, wd_t, wu_t, live_col, dead_eps,
    t_sum, t_sq, t_min, t_max, t_dead,
    LIVE: tl.constexpr, ROW_MASK: tl.constexpr, TELEMETRY: tl.constexpr,
    C: tl.constexpr, R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, ACC_ROWS: tl.constexpr,
):  # fmt: skip
    """One (BLOCK_N, BLOCK_V) tile: load, bottleneck (LIVE), store, fold into the telemetry."""
    rows = row_start + tl.arange(0, BLOCK_N)
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]
    mask = (rows < N)[:, None] & col_ok[None, :] if ROW_MASK else col_ok[None, :]
    x_raw = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if LIVE:
        y_out = _bottleneck(
            x_raw.to(tl.float32), wd_t, wu_t, live_col, R, BLOCK_N, BLOCK_R, BLOCK_S, BLOCK_C
        ).to(x_raw.dtype)
    else:
        y_out = x_raw
    tl.store(out_ptr + offs, y_out, mask=mask)
    if TELEMETRY:
        if ROW_MASK or BLOCK_C != C:
            full_mask = (
                ((rows < N)[:, None] & col_ok[None, :])
                if ROW_MASK
                else (col_ok[None, :] & (rows >= 0)[:, None])
            )
            t_sum, t_sq, t_min, t_max, t_dead = _accumulate(
                y_out.to(tl.float32),
                full_mask,
                dead_eps,
                t_sum,
                t_sq,
                t_min,
                t_max,
                t_dead,
                BLOCK_N,
                ACC_ROWS,
            )
        else:
            t_sum, t_sq, t_min, t_max, t_dead = _accumulate_full(
                y_out.to(tl.float32), dead_eps, t_sum, t_sq, t_min, t_max, t_dead, BLOCK_N, ACC_ROWS
            )
    return t_sum, t_sq, t_min, t_max, t_dead


@triton.jit
def _accumulate_full(
    v, dead_eps, t_sum, t_sq, t_min, t_max, t_dead, BLOCK_N: tl.constexpr, ACC_ROWS: tl.constexpr
):
    """_accumulate for a tile with no masked element: no selects."""
    t_sum += _fold_rows(v, 0, BLOCK_N, ACC_ROWS)
    t_sq += _fold_rows(v * v, 0, BLOCK_N, ACC_ROWS)
    t_min = tl.minimum(t_min, _fold_rows(v, 1, BLOCK_N, ACC_ROWS))
    t_max = tl.maximum(t_max, _fold_rows(v, 2, BLOCK_N, ACC_ROWS))
    t_dead += _fold_rows((tl.abs(v) <= dead_eps).to(tl.float32), 0, BLOCK_N, ACC_ROWS)
    return t_sum, t_sq, t_min, t_max, t_dead


@triton.jit
def _fold_rows(t, OP: tl.constexpr, BLOCK_N: tl.constexpr, ACC_ROWS: tl.constexpr):
    """(BLOCK_N, BLOCK_V) -> (ACC_ROWS, BLOCK_V). With ACC_ROWS = num_warps, row i·ACC_ROWS + w lies
    in warp w's thread, so reducing over i (axis 0 of the split) is in-thread."""
    if ACC_ROWS == BLOCK_N:
        return t
    t3 = tl.reshape(t, [BLOCK_N // ACC_ROWS, ACC_ROWS, t.shape[1]])
    if OP == 0:
        return tl.sum(t3, axis=0)
    elif OP == 1:
        return tl.min(t3, axis=0)
    else:
        return tl.max(t3, axis=0)


@triton.jit
def _accumulate(
    v, mask, dead_eps, t_sum, t_sq, t_min, t_max, t_dead, BLOCK_N: tl.constexpr, ACC_ROWS: tl.constexpr
):
    """Fold a (BLOCK_N, BLOCK_V) tile of stored outputs into the running statistics."""
    t_sum += _fold_rows(tl.where(mask, v, 0.0), 0, BLOCK_N, ACC_ROWS)
    t_sq += _fold_rows(tl.where(mask, v * v, 0.0), 0, BLOCK_N, ACC_ROWS)
    t_min = tl.minimum(t_min, _fold_rows(tl.where(mask, v, float("inf")), 1, BLOCK_N, ACC_ROWS))
    t_max = tl.maximum(t_max, _fold_rows(tl.where(mask, v, float("-inf")), 2, BLOCK_N, ACC_ROWS))
    t_dead += _fold_rows((mask & (tl.abs(v) <= dead_eps)).to(tl.float32), 0, BLOCK_N, ACC_ROWS)
    return t_sum, t_sq, t_min, t_max, t_dead


@triton.jit
def _per_seed(t, OP: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """(ACC_ROWS, BLOCK_V) running statistic -> (BLOCK_S,) per seed (one cross-warp fold)."""
    if OP == 0:
        return tl.sum(tl.reshape(tl.sum(t, axis=0), [BLOCK_S, BLOCK_C]), axis=1)
    elif OP == 1:
        return tl.min(tl.reshape(tl.min(t, axis=0), [BLOCK_S, BLOCK_C]), axis=1)
    else:
        return tl.max(tl.reshape(tl.max(t, axis=0), [BLOCK_S, BLOCK_C]), axis=1)


@triton.jit
def _reduce_groups(part_ptr, field, G, S, seeds, s_mask, out, BLOCK_S: tl.constexpr, G_TILE: tl.constexpr):
    """Fold the (5, G, S) partials of this seed block over the G row groups into tel (S, 5).

    G_TILE groups per step and all five fields loaded together (one L2 round trip per step); the
    order is fixed, so the result does not depend on which program came last."""
    g = tl.arange(0, G_TILE)
    a_sum = tl.zeros([G_TILE, BLOCK_S], dtype=tl.float32)
    a_sq = tl.zeros([G_TILE, BLOCK_S], dtype=tl.float32)
    a_min = tl.full([G_TILE, BLOCK_S], float("inf"), dtype=tl.float32)
    a_max = tl.full([G_TILE, BLOCK_S], float("-inf"), dtype=tl.float32)
    a_dead = tl.zeros([G_TILE, BLOCK_S], dtype=tl.float32)
    for g0 in range(0, G, G_TILE):
        m = ((g0 + g) < G)[:, None] & s_mask[None, :]
        src = part_ptr + (g0 + g)[:, None] * S + seeds[None, :]
        # .cg: read the other programs' partials from L2, never from a stale L1 line.
        a_sum += tl.load(src, mask=m, other=0.0, cache_modifier=".cg")
        a_sq += tl.load(src + field, mask=m, other=0.0, cache_modifier=".cg")
        a_min = tl.minimum(a_min, tl.load(src + 2 * field, mask=m, other=float("inf"), cache_modifier=".cg"))
        a_max = tl.maximum(a_max, tl.load(src + 3 * field, mask=m, other=float("-inf"), cache_modifier=".cg"))
        a_dead += tl.load(src + 4 * field, mask=m, other=0.0, cache_modifier=".cg")
    tl.store(out + 0, tl.sum(a_sum, axis=0), mask=s_mask)
    tl.store(out + 1, tl.sum(a_sq, axis=0), mask=s_mask)
    tl.store(out + 2, tl.min(a_min, axis=0), mask=s_mask)
    tl.store(out + 3, tl.max(a_max, axis=0), mask=s_mask)
    tl.store(out + 4, tl.sum(a_dead, axis=0), mask=s_mask)


@triton.jit
def _publish_telemetry(
    part_ptr, tel_ptr, count_ptr, pid_s, pid_g, G, S,
    t_sum, t_sq, t_min, t_max, t_dead,
    BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, REDUCE: tl.constexpr, G_TILE: tl.constexpr,
):  # fmt: skip
    """Per-seed partial of this program -> part[field, group, seed]; the block's last program reduces."""
    seeds = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    s_mask = seeds < S
    field = G * S  # stride between fields of the partials buffer
    base = part_ptr + pid_g * S + seeds
    tl.store(base, _per_seed(t_sum, 0, BLOCK_S, BLOCK_C), mask=s_mask)
    tl.store(base + field, _per_seed(t_sq, 0, BLOCK_S, BLOCK_C), mask=s_mask)
    tl.store(base + 2 * field, _per_seed(t_min, 1, BLOCK_S, BLOCK_C), mask=s_mask)
    tl.store(base + 3 * field, _per_seed(t_max, 2, BLOCK_S, BLOCK_C), mask=s_mask)
    tl.store(base + 4 * field, _per_seed(t_dead, 0, BLOCK_S, BLOCK_C), mask=s_mask)
    if REDUCE:  # False only in benchmark diagnostics: partials written, never folded
        # Every thread's partial stores precede the counter bump (barrier + acq_rel atomic at GPU scope).
        tl.debug_barrier()
        done = tl.atomic_add(count_ptr + pid_s, 1, sem="acq_rel", scope="gpu")
        if done == G - 1:
            _reduce_groups(part_ptr, field, G, S, seeds, s_mask, tel_ptr + seeds * 5, BLOCK_S, G_TILE)
            tl.store(count_ptr + pid_s, 0)  # ready for the next launch on this stream


_OCCUPANCY: dict[tuple[Any, ...], int] = {}
# (rows_per_thread, cols_per_thread or None for the default) — each was fastest on some shape on
# an H200 (see tools/results/bench_seed_layer_h200.json): more rows in flight for large layers,
# narrower vectors (more threads per column span, fewer adapter registers) for smaller ones.
TILE_CANDIDATES: tuple[tuple[int, int | None], ...] = ((4, None), (8, None), (4, 2))
_TILE_CHOICE: dict[tuple[Any, ...], tuple[int, int | None]] = {}


def _tuned_tile(
    x: torch.Tensor,
    stage: torch.Tensor,
    alpha: torch.Tensor,
    w_down: torch.Tensor,
    w_up: torch.Tensor,
    dead_eps: float,
    telemetry: bool,
) -> tuple[int, int | None]:
    """Time each tile candidate a few times on these inputs (CUDA events) and keep the fastest.

    Skipped while a CUDA graph is being captured (timing would break the capture): the first
    candidate is used and nothing is cached, so warm up once before capturing."""
    n = x.shape[0]
    s, c, r = w_down.shape
    key = (x.device.index, triton.next_power_of_2(n), s, c, r, x.dtype, w_down.dtype, telemetry)
    choice = _TILE_CHOICE.get(key)
    if choice is not None:
        return choice
    if torch.cuda.is_current_stream_capturing():
        return TILE_CANDIDATES[0]
    best: tuple[float, tuple[int, int | None]] | None = None
    for rpt, cpt in TILE_CANDIDATES:

        def run(rpt: int = rpt, cpt: int | None = cpt) -> None:
            seed_layer_triton(
                x, stage, alpha, w_down, w_up, dead_eps, telemetry, rows_per_thread=rpt, cols_per_thread=cpt
            )

        run()  # compile and size the grid outside the timing
        times = []
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        t = sorted(times)[1]
        if best is None or t < best[0]:
            best = (t, (rpt, cpt))
    assert best is not None
    _TILE_CHOICE[key] = best[1]
    return best[1]


_COUNTERS: dict[tuple[str, int | None, int], torch.Tensor] = {}


def _counters(device: torch.device, seed_blocks: int) -> torch.Tensor:
    """Zeroed int32 counters, one per seed block, cached per device and stream (the kernel re-zeroes them)."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (device.type, device.index, stream)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < seed_blocks:
        buf = torch.zeros(max(seed_blocks, 64), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    return buf


def seed_layer_triton(
    x: torch.Tensor,
    stage: torch.Tensor,
    alpha: torch.Tensor,
    w_down: torch.Tensor,
    w_up: torch.Tensor,
    dead_eps: float = 0.0,
    telemetry: bool = True,
    *,
    rows_per_thread: int | None = None,
    num_warps: int = 4,
    programs_per_sm: int | None = None,
    cols_per_thread: int | None = None,
    fold_rows: bool = True,
    _reduce: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward only (no autograd): (out (N, D), telemetry (S, 5) float32 or None).

    ``rows_per_thread`` and ``cols_per_thread`` None (CUDA): the fastest of ``TILE_CANDIDATES``,
    timed on the first call for each (N rounded to a power of two, S, c, r, dtype, telemetry).
    ``programs_per_sm`` None: as many as the compiled kernel's registers and shared memory let one
    SM hold (read from the kernel once per configuration), so the grid is exactly one full wave.
    The other keywords are launch knobs for benchmarks; ``_reduce=False`` is a diagnostic that
    skips the final telemetry fold (the telemetry returned is then meaningless).
    """
    n, _d = x.shape
    s, c, r = w_down.shape
    x = x.contiguous()
    if stage.dtype not in (torch.int32, torch.int64) or stage.device != x.device:
        stage = stage.to(device=x.device, dtype=torch.int32)
    if not alpha.is_floating_point() or alpha.device != x.device:
        alpha = alpha.to(device=x.device, dtype=torch.float32)
    stage, alpha = stage.contiguous(), alpha.contiguous()
    w_down, w_up = w_down.contiguous(), w_up.contiguous()
    out = torch.empty_like(x)
    sms, max_threads, smem = device_limits(x.device.index or 0) if x.is_cuda else (4, 2048, 228 * 1024)
    if rows_per_thread is None and cols_per_thread is None and x.is_cuda:
        rows_per_thread, cols_per_thread = _tuned_tile(x, stage, alpha, w_down, w_up, dead_eps, telemetry)
    if rows_per_thread is None:
        rows_per_thread = TILE_CANDIDATES[0][0]
    knobs: dict[str, Any] = {
        "rows_per_thread": rows_per_thread,
        "num_warps": num_warps,
        "cols_per_thread": cols_per_thread,
        "fold_rows": fold_rows,
    }
    plan = launch_plan(n, s, c, r, x.element_size(), sms, programs_per_sm=programs_per_sm or 4, **knobs)
    if telemetry:
        count = _counters(x.device, plan.seed_blocks)
        tel = torch.empty((s, N_FIELDS), device=x.device, dtype=torch.float32)
    else:  # never touched: TELEMETRY is a constexpr False
        count = tel = out
    meta = {
        "C": c,
        "R": r,
        "BLOCK_N": plan.block_n,
        "ACC_ROWS": plan.acc_rows,
        "BLOCK_S": plan.block_s,
        "BLOCK_C": plan.block_c,
        "BLOCK_R": plan.block_r,
        "COLS_PER_THREAD": plan.cols_per_thread,
        "TELEMETRY": telemetry,
        "REDUCE": _reduce,
        "G_TILE": plan.g_tile,
        "num_warps": plan.num_warps,
    }
    if programs_per_sm is None and x.is_cuda:
        key = (x.device.index, x.dtype, w_down.dtype, stage.dtype, alpha.dtype, tuple(meta.items()))
        resident = _OCCUPANCY.get(key)
        if resident is None:
            ints = (n, s, plan.row_iters, plan.row_groups)  # same integer specialisation as the launch
            resident = _resident_programs_of(
                meta, ints, x, out, stage, alpha, w_down, w_up, count, tel, max_threads, smem
            )
            _OCCUPANCY[key] = resident
        plan = launch_plan(n, s, c, r, x.element_size(), sms, programs_per_sm=resident, **knobs)
    part = (
        torch.empty((N_FIELDS, plan.row_groups, s), device=x.device, dtype=torch.float32)
        if telemetry
        else out
    )
    args = (x, out, stage, alpha, w_down, w_up, part, tel, count, n, s, plan.row_iters, plan.row_groups)
    _seed_layer_fwd_kernel[plan.grid](*args, float(dead_eps), **meta)
    return out, (tel if telemetry else None)


def _resident_programs_of(meta: dict[str, Any], ints: tuple[int, int, int, int], *tensors: Any) -> int:
    """Compile (without launching) and read the kernel's registers and shared memory."""
    x, out, stage, alpha, w_down, w_up, count, tel, max_threads, smem = tensors
    try:
        kernel = _seed_layer_fwd_kernel.warmup(
            x, out, stage, alpha, w_down, w_up, tel, tel, count, *ints, 0.5, grid=(1, 1), **meta
        )
        kernel._init_handles()
        return resident_programs(
            int(kernel.n_regs), int(kernel.metadata.shared), meta["num_warps"], max_threads, smem
        )
    except Exception:  # noqa: BLE001 - an API difference across Triton versions: keep the default
        return 4
