"""KasminaLayer: a seed site between two blocks of a 1-D CNN.

The activation (B, C, L) is split along channels into ``chunks`` chunks; each chunk is a logical
seed slot whose state lives in per-chunk buffers (stage, blueprint id, epochs in stage, grafting
strategy id, alpha, telemetry). Two ways to grow a seed:

* **chunk bank** (the fast path): a ``bottleneck_adapter`` of the layer's rank on one chunk is a
  row of two stacked parameters (S, c, r) / (S, r, c), evaluated for all chunks at once by
  ``kernels.reference.seed_layer_reference`` — thousands of seeds cost one einsum, no Python loop —
  or, for CUDA tensors, by the fused Triton kernel (``kernels.seed_layer.seed_layer``).
* **module seeds**: any other blueprint, on one chunk or on the whole layer (``chunk=None``),
  runs through its own module (few per layer; the forward loops over *live module seeds* only).

Stages change only through the :class:`LifecycleEngine`; the buffers mirror it via a callback.
What the forward does per stage: GERMINATED/TRAINING return the host tensor itself (TRAINING
seeds are computed on ``host.detach()`` into ``incubator_output()`` for their own loss);
BLENDING adds ``alpha · delta``; SHADOWING/PROBATIONARY/FOSSILIZED add the full delta.
Seeds always see ``host.detach()``: no gradient goes from a seed into the host.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from kasmina_edge.contracts.lifecycle import Stage, TransitionEvent
from kasmina_edge.host.blueprints import create_blueprint, get_blueprint, is_registered
from kasmina_edge.host.blueprints.registry import BlueprintSpec
from kasmina_edge.host.kasmina.export_view import SeedLayerView, dense_bank
from kasmina_edge.host.kasmina.gates import ResetInputs, SanityInputs
from kasmina_edge.host.kasmina.grafting import GraftingStrategy, make_grafting
from kasmina_edge.host.kasmina.isolation import IsolationMonitor
from kasmina_edge.host.kasmina.lifecycle_engine import LifecycleEngine
from kasmina_edge.host.kasmina.registry import ParameterRegistry
from kasmina_edge.host.kasmina.seed_gates import SeedGates
from kasmina_edge.host.kasmina.seed_records import SeedRecords
from kasmina_edge.host.kasmina.seed_state import (
    KERNEL_CODE,
    OUTPUT_STAGES,
    SLOT_STAGES,
    GerminationRejected,
    SeedError,
    SeedInfo,
    SeedSlot,
    module_key,
)
from kasmina_edge.host.kasmina.seed_training import SeedTraining
from kasmina_edge.host.kasmina.telemetry import TELEMETRY_KEYS, chunk_abs_sum, chunk_stats
from kasmina_edge.host.kernels.reference import DORMANT_CODE, FOSSILIZED_CODE, seed_layer_reference
from kasmina_edge.host.kernels.seed_layer import seed_layer

# Re-exported: callers import the seed errors and snapshot from the layer module.
__all__ = [
    "OUTPUT_STAGES",
    "SLOT_STAGES",
    "GerminationRejected",
    "KasminaLayer",
    "SeedError",
    "SeedInfo",
    "build_seed_module",
    "freeze_host",
    "host_parameters",
]


def _bank_forward(
    flat: torch.Tensor,
    code: torch.Tensor,
    alpha: torch.Tensor,
    w_down: torch.Tensor,
    w_up: torch.Tensor,
    dead_eps: float = 0.0,
    telemetry: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunk bank for every chunk at once: the fused Triton kernel (backend auto) for CUDA
    tensors, the vectorised reference elsewhere."""
    if flat.is_cuda:
        return seed_layer(flat, code, alpha, w_down, w_up, dead_eps, telemetry=telemetry)
    return seed_layer_reference(flat, code, alpha, w_down, w_up, dead_eps, telemetry=telemetry)




class KasminaLayer(SeedRecords, SeedTraining, SeedGates, nn.Module):
    """The seed site: its buffers, the forward, germination (G0) and the slot bookkeeping that mirrors the engine.

    Reading seeds out (:class:`SeedRecords`), training them (:class:`SeedTraining`) and measuring them for the
    gates (:class:`SeedGates`) live in their own modules and act on this layer's state.
    """

    def __init__(
        self,
        channels: int,
        chunks: int,
        site: int,
        *,
        rank: int = 4,
        length: int | None = None,
        target: str | None = None,
        max_params: int | None = None,
        max_macs: int | None = None,
        dead_eps: float = 1e-6,
        engine: LifecycleEngine | None = None,
        registry: ParameterRegistry | None = None,
    ) -> None:
        super().__init__()
        if channels < 1 or chunks < 1 or channels % chunks:
            raise SeedError(f"KasminaLayer(site {site}): channels={channels} must be a positive multiple of chunks={chunks}")
        self.channels, self.chunks, self.site, self.rank = channels, chunks, site, rank
        self.chunk_size = channels // chunks
        self.length = length
        self.target, self.max_params, self.max_macs = target, max_params, max_macs
        self.dead_eps = dead_eps
        self.telemetry_enabled = True
        s, c = chunks, self.chunk_size
        # The chunk bank: row i is chunk i's adapter. W_up rows are zeroed at germination.
        self.w_down = nn.Parameter(torch.randn(s, c, rank) / math.sqrt(c))
        self.w_up = nn.Parameter(torch.zeros(s, rank, c))
        self.seed_modules = nn.ModuleDict()
        # Per-chunk seed state (mirrors the lifecycle engine; the forward reads only these).
        self.register_buffer("stage", torch.zeros(s, dtype=torch.long))
        self.register_buffer("blueprint_id", torch.full((s,), -1, dtype=torch.long))
        self.register_buffer("epochs_in_stage", torch.zeros(s, dtype=torch.long))
        self.register_buffer("grafting_id", torch.full((s,), -1, dtype=torch.long))
        self.register_buffer("alpha", torch.zeros(s))
        self.register_buffer("lr_scale", torch.ones(s))
        self.register_buffer("in_bank", torch.zeros(s, dtype=torch.bool))  # chunk runs through the bank
        self.register_buffer("kernel_code_lut", torch.tensor(KERNEL_CODE, dtype=torch.long), persistent=False)
        # Per-chunk telemetry of the last forward, and the reference recorded at germination.
        for name in TELEMETRY_KEYS:
            self.register_buffer(f"tel_{name}", torch.zeros(s))
        self.register_buffer("ref_mean", torch.zeros(s))
        self.register_buffer("ref_std", torch.ones(s))
        self.register_buffer("ref_set", torch.zeros(s, dtype=torch.bool))
        self.register_buffer("ref_pending", torch.zeros(s, dtype=torch.bool))
        self.register_buffer("tel_batches", torch.zeros((), dtype=torch.long))
        self._seeds: dict[str, SeedSlot] = {}
        self._chunk_owner: dict[int, str] = {}  # chunk -> seed id (slot-holding seeds only)
        self._cleared: dict[str, tuple[int, int]] = {}  # RESETTING seeds whose slot is already clean
        # Python-side sets so the forward decides what to run without reading tensors.
        self._bank_output: set[str] = set()
        self._bank_training: set[str] = set()
        self._module_output: list[str] = []
        self._module_training: list[str] = []
        self._incubator: torch.Tensor | None = None
        self._bank_registered_with: ParameterRegistry | None = None
        self.engine = engine or LifecycleEngine()
        self.registry = registry or ParameterRegistry()
        self._register_bank()

    # -- wiring -----------------------------------------------------------------------------
    def attach(
        self,
        engine: LifecycleEngine | None = None,
        registry: ParameterRegistry | None = None,
        **limits: Any,
    ) -> None:
        """Share a model-wide engine/registry (before any germination) and set target/max_params/max_macs."""
        if self._seeds and (engine is not None or registry is not None):
            raise SeedError(f"site {self.site}: attach the engine/registry before germinating seeds")
        if engine is not None:
            self.engine = engine
        if registry is not None:
            self.registry = registry
            self._register_bank()
        for key, value in limits.items():
            if key not in ("target", "max_params", "max_macs", "length"):
                raise SeedError(f"site {self.site}: unknown limit {key!r}")
            setattr(self, key, value)

    def _register_bank(self) -> None:
        if self._bank_registered_with is not self.registry:
            self.registry.register_bank([self.w_down, self.w_up], self.lr_scale)
            self._bank_registered_with = self.registry

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise SeedError(f"site {self.site}: expected (B, {self.channels}, L), got {tuple(x.shape)}")
        if self.length is None and not torch.compiler.is_compiling():
            self.length = int(x.shape[2])
        out = x
        xd = x.detach()
        bank_tel: torch.Tensor | None = None
        if self._bank_output:
            code = torch.where(self.in_bank, self.kernel_code_lut[self.stage], DORMANT_CODE)
            alpha = torch.where(self.stage == int(Stage.BLENDING), self.alpha, torch.ones_like(self.alpha))
            flat = xd.permute(0, 2, 1).reshape(-1, self.channels)
            w_down, w_up = self._bank_weights()
            out_flat, bank_tel = _bank_forward(
                flat, code, alpha, w_down, w_up, self.dead_eps, telemetry=self.telemetry_enabled
            )
            bank_out = out_flat.reshape(x.shape[0], x.shape[2], self.channels).permute(0, 2, 1)
            live = (code != DORMANT_CODE).repeat_interleave(self.chunk_size).view(1, -1, 1)
            # + (x - xd): value unchanged, gradient to the host straight through; where(): chunks
            # without a live seed return the host's values exactly.
            out = torch.where(live, bank_out + (x - xd), x)
        for sid in self._module_output:
            out = self._apply_module(sid, out)
        self._incubator = self._incubate(out) if (self._bank_training or self._module_training) else None
        if self.telemetry_enabled and not torch.compiler.is_compiling():
            self._record_telemetry(xd, out, bank_tel if not self._module_output else None)
        return out

    def _bank_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The bank's weights, with each row's gradient scaled by its seed's lr scale (Tamiyo's
        intensity): value w exactly, gradient lr_scale[row]. Skipped where no gradient is taken."""
        if not torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.w_down, self.w_up
        scale = self.lr_scale.view(-1, 1, 1)
        return tuple(w.detach() + (w - w.detach()) * scale for w in (self.w_down, self.w_up))  # type: ignore[return-value]

    def _channel_range(self, seed: SeedSlot) -> tuple[int, int]:
        return seed.start * self.chunk_size, seed.stop * self.chunk_size

    def _apply_module(self, sid: str, y: torch.Tensor) -> torch.Tensor:
        seed = self._seeds[sid]
        a, b = self._channel_range(seed)
        whole = (a, b) == (0, self.channels)
        seg = y if whole else y[:, a:b]
        segd = seg.detach()
        assert seed.module is not None
        delta = seed.module(segd) - segd
        if self.engine.stage(sid) is Stage.BLENDING:
            delta = self.alpha[seed.start] * delta
        seg_out = seg + delta
        return seg_out if whole else torch.cat([y[:, :a], seg_out, y[:, b:]], dim=1)

    def _incubate(self, out: torch.Tensor) -> torch.Tensor:
        """The layer's output as if every TRAINING seed were live (alpha 1), from detached input."""
        inc = out.detach()
        if self._bank_training:
            training = self.in_bank & (self.stage == int(Stage.TRAINING))
            code = torch.where(training, torch.full_like(self.stage, FOSSILIZED_CODE), DORMANT_CODE)
            flat = inc.permute(0, 2, 1).reshape(-1, self.channels)
            w_down, w_up = self._bank_weights()
            inc_flat, _ = _bank_forward(flat, code, self.alpha, w_down, w_up, telemetry=False)
            inc = inc_flat.reshape(out.shape[0], out.shape[2], self.channels).permute(0, 2, 1)
        for sid in self._module_training:
            seed = self._seeds[sid]
            a, b = self._channel_range(seed)
            assert seed.module is not None
            if (a, b) == (0, self.channels):
                inc = seed.module(inc)
            else:
                inc = torch.cat([inc[:, :a], seed.module(inc[:, a:b]), inc[:, b:]], dim=1)
        return inc

    def incubator_output(self) -> torch.Tensor | None:
        """What TRAINING seeds would output (from the last forward), for their own loss; None if none.

        Gradients from a loss on it reach only the TRAINING seeds' parameters (its input is detached).
        """
        return self._incubator

    @torch.no_grad()
    def _record_telemetry(self, xd: torch.Tensor, out: torch.Tensor, tel: torch.Tensor | None) -> None:
        s = self.chunks
        if tel is None:
            tel = chunk_stats(out, s, self.dead_eps)
        count = float(out.shape[0] * self.chunk_size * out.shape[2])
        mean = tel[:, 0] / count
        var = (tel[:, 1] / count - mean * mean).clamp_min(0.0)
        self.tel_mean.copy_(mean)
        self.tel_var.copy_(var)
        self.tel_dead_ratio.copy_(tel[:, 4] / count)
        # The reference of freshly germinated chunks is the first batch they see (host output).
        self.ref_mean.copy_(torch.where(self.ref_pending, mean, self.ref_mean))
        self.ref_std.copy_(torch.where(self.ref_pending, var.sqrt(), self.ref_std))
        self.ref_set |= self.ref_pending
        self.ref_pending.zero_()
        drift = (mean - self.ref_mean).abs() / (self.ref_std + 1e-6)
        self.tel_drift.copy_(torch.where(self.ref_set, drift, torch.zeros_like(drift)))
        # Utilization: how much the seeds move their chunk (candidate output for TRAINING seeds).
        effect = (self._incubator if self._incubator is not None else out).detach() - xd
        self.tel_utilization.copy_(chunk_abs_sum(effect, s) / (chunk_abs_sum(xd, s) + 1e-12))
        self.tel_batches += 1

    def telemetry(self) -> dict[str, torch.Tensor]:
        """Per-chunk telemetry of the last forward: mean, var, dead_ratio, drift, utilization (each (S,))."""
        return {k: getattr(self, f"tel_{k}").clone() for k in TELEMETRY_KEYS}

    # -- seeds ------------------------------------------------------------------------------
    def _seed_id(self, start: int, stop: int) -> str:
        base = f"site{self.site}/all" if (start, stop) == (0, self.chunks) else (
            f"site{self.site}/c{start}" if stop == start + 1 else f"site{self.site}/c{start}-{stop - 1}"
        )
        sid, n = base, 1
        while self.engine.knows(sid) and self.engine.stage(sid) is Stage.TERMINATED:
            n += 1
            sid = f"{base}#{n}"
        return sid

    def _chunk_range(self, chunk: int | tuple[int, int] | None) -> tuple[int, int]:
        if chunk is None:
            return 0, self.chunks
        start, stop = (chunk, chunk + 1) if isinstance(chunk, int) else chunk
        if not 0 <= start < stop <= self.chunks:
            raise SeedError(f"site {self.site}: chunk range [{start}, {stop}) outside 0..{self.chunks - 1}")
        return start, stop

    def germinate(
        self,
        chunk: int | tuple[int, int] | None,
        blueprint: str,
        *,
        grafting: str | GraftingStrategy = "fixed_ramp",
        lr_scale: float = 1.0,
        **params: Any,
    ) -> str:
        """Grow ``blueprint`` on one chunk, a (start, stop) chunk range, or the whole layer (None).

        Runs G0 (registered, finite, within budget, target can run it) and moves DORMANT ->
        GERMINATED. Returns the seed id; raises GerminationRejected with G0's reason.
        """
        start, stop = self._chunk_range(chunk)
        taken = sorted({self._chunk_owner[i] for i in range(start, stop) if i in self._chunk_owner})
        if taken:
            raise SeedError(f"site {self.site}: chunks [{start}, {stop}) held by {', '.join(taken)}")
        graft = make_grafting(grafting) if isinstance(grafting, str) else grafting
        sid = self._seed_id(start, stop)
        channels = (stop - start) * self.chunk_size
        if not is_registered(blueprint):
            measures = SanityInputs(blueprint, False, True, 0, 0, self.max_params, self.max_macs, self.target, False)
            self._germinate_gate(sid, measures)
        spec = get_blueprint(blueprint)
        resolved = spec.resolve(**params)
        in_bank = spec.chunk_kernel and stop == start + 1 and resolved.get("rank") == self.rank
        module = None if in_bank else create_blueprint(blueprint, channels, self.length, **resolved)
        if in_bank:
            with torch.no_grad():
                nn.init.normal_(self.w_down[start], std=1.0 / math.sqrt(self.chunk_size))
                self.w_up[start].zero_()
        measures = self._sanity_inputs(spec, channels, resolved, module, start)
        seed = SeedSlot(sid, start, stop, blueprint, resolved, in_bank, module, graft)
        self._germinate_gate(sid, measures, seed)
        if lr_scale != 1.0:
            self.registry.set_lr_scale(sid, lr_scale)
        return sid

    def _sanity_inputs(
        self, spec: BlueprintSpec, channels: int, params: dict[str, Any], module: nn.Module | None, row: int
    ) -> SanityInputs:
        tensors = [self.w_down[row], self.w_up[row]] if module is None else list(module.parameters())
        finite = all(bool(torch.isfinite(t).all()) for t in tensors)
        length = self.length or 1
        return SanityInputs(
            blueprint=spec.name,
            registered=True,
            params_finite=finite,
            param_count=spec.param_count(channels, **params),
            macs=spec.macs(channels, length, **params),
            max_params=self.max_params,
            max_macs=self.max_macs,
            target=self.target,
            target_ok=self.target is None or spec.supports(self.target, channels, **params),
        )

    def _germinate_gate(self, sid: str, measures: SanityInputs, seed: SeedSlot | None = None) -> None:
        # a partial, not a lambda: a deep copy of the model re-binds it to the copy's own slots
        self.engine.register(sid, on_move=self._on_move, on_reset=functools.partial(self._clear_slot, sid))
        result = self.engine.evaluate(sid, Stage.GERMINATED, measures)
        if result is None or not result.passed or seed is None:
            raise GerminationRejected(
                f"site {self.site}: G0 refused {measures.blueprint!r}: {result.reason if result else 'no gate'}"
            )
        self._seeds[sid] = seed
        for i in range(seed.start, seed.stop):
            self._chunk_owner[i] = sid
        if seed.module is not None:
            self.seed_modules[module_key(sid)] = seed.module
            # strict=False: a parameter shared with the host is not refused here but becomes an
            # isolation violation (the monitor below counts it; G1 fails, the breaker trips).
            self.registry.register_seed(sid, seed.module.parameters(), strict=False)
        else:
            self.registry.register_seed_row(sid, self.w_down, seed.start)
        seed.monitor = IsolationMonitor(self._own_params(seed), self.registry.host_parameters())
        sl = slice(seed.start, seed.stop)
        with torch.no_grad():
            self.blueprint_id[sl] = get_blueprint(seed.blueprint).blueprint_id
            self.grafting_id[sl] = seed.grafting.strategy_id
            self.in_bank[sl] = seed.in_bank
            if int(self.tel_batches) > 0:
                self.ref_mean[sl] = self.tel_mean[sl]
                self.ref_std[sl] = self.tel_var[sl].sqrt()
                self.ref_set[sl] = True
            else:
                self.ref_pending[sl] = True
        self.engine.move(sid, Stage.GERMINATED, reason=f"germinate {seed.blueprint}", gate=result)

    def _on_move(self, event: TransitionEvent) -> None:
        """Mirror a transition into the per-chunk buffers and the forward's Python-side sets."""
        sid, dst = event.seed_id, event.dst
        seed = self._seeds.get(sid)
        if seed is None:
            # A cleared slot (RESETTING -> DORMANT): mirror the stage, then hand the chunks back.
            start, stop = self._cleared.pop(sid, (0, 0))
            with torch.no_grad():
                self.stage[start:stop] = int(dst)
            for i in range(start, stop):
                if self._chunk_owner.get(i) == sid:
                    del self._chunk_owner[i]
            return
        sl = slice(seed.start, seed.stop)
        with torch.no_grad():
            self.stage[sl] = int(dst)
            self.epochs_in_stage[sl] = 0
            if dst is Stage.BLENDING:
                seed.grafting.reset()
                self.alpha[sl] = seed.grafting.alpha
                seed.alpha_history = [seed.grafting.alpha]
            elif dst in (Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED):
                self.alpha[sl] = 1.0
            elif dst not in OUTPUT_STAGES:
                self.alpha[sl] = 0.0
        out_set, train_set = (self._bank_output, self._bank_training) if seed.in_bank else (None, None)
        if seed.in_bank:
            assert out_set is not None and train_set is not None
            (out_set.add if dst in OUTPUT_STAGES else out_set.discard)(sid)
            (train_set.add if dst is Stage.TRAINING else train_set.discard)(sid)
        else:
            self._module_output = self._ordered(self._module_output, sid, dst in OUTPUT_STAGES)
            self._module_training = self._ordered(self._module_training, sid, dst is Stage.TRAINING)
        if dst is Stage.TERMINATED:
            self._clear_slot(sid)
            self._on_move(event)

    def _own_params(self, seed: SeedSlot) -> list[nn.Parameter]:
        return list(seed.module.parameters()) if seed.module is not None else [self.w_down, self.w_up]

    def _ordered(self, ids: list[str], sid: str, member: bool) -> list[str]:
        rest = [s for s in ids if s != sid] + ([sid] if member else [])
        return sorted(rest, key=lambda s: self._seeds[s].start)

    def _clear_slot(self, sid: str) -> ResetInputs:
        """RESETTING: drop the seed's module and parameters, zero its rows, clear counters and caches."""
        seed = self._seeds.pop(sid, None)
        if seed is not None:
            sl = slice(seed.start, seed.stop)
            # The chunks stay held until the move to DORMANT (or TERMINATED) hands them back.
            self._cleared[sid] = (seed.start, seed.stop)
            key = module_key(sid)
            if key in self.seed_modules:
                del self.seed_modules[key]
            self.registry.release(sid)
            with torch.no_grad():
                if seed.in_bank:
                    self.w_up[sl] = 0.0
                self.alpha[sl] = 0.0
                self.blueprint_id[sl] = -1
                self.in_bank[sl] = False
                self.grafting_id[sl] = -1
                self.epochs_in_stage[sl] = 0
                self.lr_scale[sl] = 1.0
                self.ref_set[sl] = False
                self.ref_pending[sl] = False
                self.ref_mean[sl] = 0.0
                self.ref_std[sl] = 1.0
            self._bank_output.discard(sid)
            self._bank_training.discard(sid)
            self._module_output = [s for s in self._module_output if s != sid]
            self._module_training = [s for s in self._module_training if s != sid]
            self._incubator = None
            start, stop = seed.start, seed.stop
        else:
            start, stop = 0, 0
        sl = slice(start, stop)
        return ResetInputs(
            slot_empty=sid not in self._seeds and module_key(sid) not in self.seed_modules,
            params_remaining=self.registry.owned_numel(sid),
            alpha=float(self.alpha[sl].abs().sum()) if stop > start else 0.0,
            counters_clear=bool((self.epochs_in_stage[sl] == 0).all()) and bool((self.blueprint_id[sl] == -1).all()),
            caches_clear=self._incubator is None and not bool(self.ref_set[sl].any()),
        )

    # -- export -------------------------------------------------------------------------------
    @torch.no_grad()
    def export_view(self) -> SeedLayerView:
        """A plain module equal to this layer's current output (identity when no seed is live)."""
        bank_down = bank_up = None
        if self._bank_output:
            rows = torch.tensor(sorted(self._seeds[s].start for s in self._bank_output), dtype=torch.long)
            alpha = torch.where(self.stage == int(Stage.BLENDING), self.alpha, torch.ones_like(self.alpha))
            bank_down, bank_up = dense_bank(self.w_down, self.w_up, rows, alpha, self.channels)
        modules = []
        for sid in self._module_output:
            s = self._seeds[sid]
            a, b = self._channel_range(s)
            alpha = float(self.alpha[s.start]) if self.engine.stage(sid) is Stage.BLENDING else 1.0
            assert s.module is not None
            modules.append((a, b, s.module, alpha))
        return SeedLayerView(self.channels, bank_down, bank_up, modules).eval()

    fossilized_module = export_view

    def extra_repr(self) -> str:
        return f"channels={self.channels}, chunks={self.chunks}, site={self.site}, rank={self.rank}"




def host_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The model's parameters that belong to no KasminaLayer (what base training should optimise)."""
    seed_ids = {id(p) for m in model.modules() if isinstance(m, KasminaLayer) for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in seed_ids]


def freeze_host(model: nn.Module) -> list[nn.Parameter]:
    """Stop gradients into the host (every parameter outside KasminaLayers) for the morph phase.

    A seed trained through the downstream head (task loss on ``incubator_output()``) then gives
    exactly zero host gradient. Returns the frozen parameters (``requires_grad_(True)`` undoes it).
    """
    params = host_parameters(model)
    for p in params:
        p.requires_grad_(False)
    return params


def build_seed_module(record: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a seed saved with ``seed_record`` / ``seed_state_dict`` as a plain module on its channels."""
    channels = int(record["channels"][1]) - int(record["channels"][0])
    module = create_blueprint(str(record["blueprint"]), channels, None, **dict(record["params"]))
    module.load_state_dict(state)
    return module.eval()
