"""Quantization: int8 grids, BatchNorm folding, PT2E post-training int8, Brevitas QAT for 8/4-bit kernels.

PTQ follows litert-torch's PT2E route (per-channel symmetric int8 weights, per-tensor affine int8
activations, calibrated on ECG windows). Two things are forced rather than observed:

* the activation grid at every *cut* (a segment's input/output, a kernel's input/output) is fixed to
  the site's :class:`QuantGrid`, so int8 tensors pass between artifacts without requantizing;
* the weight scales of a QAT kernel are fixed to the scales Brevitas trained with, so a 4-bit kernel
  lands in an int8 TFLite with every weight in [-7, 7] (and packs two per byte, see ``pack4``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kasmina_edge.contracts.optional import require

if TYPE_CHECKING:
    import torch
    from torch import nn

INT8_MIN, INT8_MAX = -128, 127


@dataclass(frozen=True)
class QuantGrid:
    """A per-tensor int8 grid: real = (q - zero_point) * scale. ``scale`` is exactly a float32."""

    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"grid scale must be positive and finite, got {self.scale}")
        if not INT8_MIN <= self.zero_point <= INT8_MAX:
            raise ValueError(f"grid zero point {self.zero_point} outside int8")
        object.__setattr__(self, "scale", float(np.float32(self.scale)))

    @classmethod
    def from_range(cls, lo: float, hi: float, *, symmetric: bool = True) -> QuantGrid:
        """The int8 grid covering [lo, hi] (always including 0); affine unless ``symmetric``."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if symmetric:
            amax = max(abs(lo), abs(hi), 1e-8)
            return cls(scale=amax / 127.0, zero_point=0)
        span = max(hi - lo, 1e-8)
        scale = span / 255.0
        zp = int(round(INT8_MIN - lo / float(np.float32(scale))))
        return cls(scale=scale, zero_point=max(INT8_MIN, min(INT8_MAX, zp)))

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, dtype=np.int32) - self.zero_point) * np.float32(self.scale)).astype(np.float32)

    def matches(self, scale: float, zero_point: int) -> bool:
        """Exact equality of the float32 scale and the zero point (what bit-exact chaining needs)."""
        return np.float32(scale) == np.float32(self.scale) and int(zero_point) == self.zero_point

    def real_range(self) -> tuple[float, float]:
        """The real values of the lowest and highest int8 codes: what the grid can hold, all else saturates."""
        return (float(np.float32(INT8_MIN - self.zero_point) * np.float32(self.scale)),
                float(np.float32(INT8_MAX - self.zero_point) * np.float32(self.scale)))  # fmt: skip

    def as_dict(self) -> dict[str, float | int]:
        return {"scale": self.scale, "zero_point": self.zero_point}


# ------------------------------------------------------------------ BatchNorm folding


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval copy of ``module`` with every Conv→BatchNorm pair folded into the conv.

    litert-torch does not fold BatchNorm (it leaves TRANSPOSE/MUL/ADD behind), so fold first.
    torch.fx's ``fuse`` finds the pairs wherever they are; modules fx cannot trace fall back to
    folding adjacent pairs inside ``nn.Sequential`` containers.
    """
    import copy

    torch = require("torch", "BatchNorm folding")
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(module).eval()
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    try:
        fused = fuse(model)
    except Exception:  # not fx-traceable (data-dependent control flow): fold what Sequentials hold
        fused = _fold_sequential_pairs(model)
    return fused.eval()


def _fold_sequential_pairs(model: nn.Module) -> nn.Module:
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in model.modules():
        if not isinstance(parent, torch.nn.Sequential):
            continue
        names = list(parent._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, torch.nn.Conv1d | torch.nn.Conv2d) and isinstance(
                bn, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d
            ):
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = torch.nn.Identity()
    return model


def count_batchnorm(module: nn.Module) -> int:
    import torch

    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


# ------------------------------------------------------------------ PT2E int8


@dataclass
class PreparedInt8:
    """A PT2E-quantized torch module (fake-quant reference) and the quantizer litert-torch needs."""

    module: Any  # torch.fx.GraphModule after convert_pt2e
    quantizer: Any
    input_grids: dict[int, QuantGrid]
    output_grid: QuantGrid | None
    fixed_weights: list[str] = field(default_factory=list)


def _dynamic_batch(example_args: Sequence[torch.Tensor]) -> tuple[dict[int, Any], ...]:
    import torch

    batch = torch.export.Dim("batch", min=1, max=65536)
    return tuple({0: batch} for _ in example_args)


def _int8_act_observer(grid: QuantGrid) -> Any:
    import torch
    from torchao.quantization.pt2e.observer import FixedQParamsObserver

    return FixedQParamsObserver(
        scale=grid.scale,
        zero_point=grid.zero_point,
        dtype=torch.int8,
        qscheme=torch.per_tensor_affine,
        quant_min=INT8_MIN,
        quant_max=INT8_MAX,
    )


def _observer_nodes(gm: Any) -> list[Any]:
    return [n for n in gm.graph.nodes if n.op == "call_module" and "activation_post_process" in str(n.target)]


def prepare_int8(
    module: nn.Module,
    example_args: Sequence[torch.Tensor],
    calibration: Iterable[Sequence[torch.Tensor]],
    *,
    input_grids: dict[int, QuantGrid] | None = None,
    output_grid: QuantGrid | None = None,
    weight_scales: dict[str, torch.Tensor] | None = None,
    residual_on_grid: bool = False,
) -> PreparedInt8:
    """PT2E-quantize ``module`` (BatchNorm already folded) with cut grids and weight scales forced.

    ``input_grids`` maps an input position to its grid; ``output_grid`` fixes the (single) output;
    ``weight_scales`` maps a parameter name (``"a.weight"``) to its per-output-channel scales.
    ``residual_on_grid``: a residual kernel (``x + f(x)``, input and output on one site grid) gets the
    grid of ``f(x)`` cut to the site's span (:func:`_residual_span_grid`).
    """
    import torch

    require("litert_torch", "int8 quantization")
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    input_grids = input_grids or {}
    weight_scales = weight_scales or {}
    # a batch of 1 would be specialised to a constant; export with 2 and keep the batch dynamic
    example_args = tuple(
        a if a.shape[0] > 1 else a.expand(2, *a.shape[1:]).contiguous() for a in example_args
    )
    # strict export keeps the source-function records the quantizer's patterns (add, ...) look for
    exported = torch.export.export(
        module.eval(), tuple(example_args), strict=True, dynamic_shapes=_dynamic_batch(example_args)
    ).module()
    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)

    placeholders = [n for n in prepared.graph.nodes if n.op == "placeholder"]
    output_node = next(n for n in prepared.graph.nodes if n.op == "output")
    forced: dict[Any, QuantGrid] = {}
    for pos, grid in input_grids.items():
        forced[_observer_after(placeholders[pos], f"input {pos}")] = grid
    if output_grid is not None:
        forced[_observer_before(output_node)] = output_grid
    fixed: list[str] = []
    for node in _observer_nodes(prepared):
        src = node.args[0]
        if node in forced:
            setattr(prepared, node.target, _int8_act_observer(forced[node]))
        elif getattr(src, "op", None) == "get_attr" and src.target in weight_scales:
            _fix_weight_observer(getattr(prepared, node.target), weight_scales[src.target])
            fixed.append(str(src.target))
    if residual_on_grid and output_grid is not None and input_grids.get(0) == output_grid:
        _cut_residual_to_span(prepared, _observer_before(output_node), set(forced), output_grid)
    missing = sorted(set(weight_scales) - set(fixed))
    if missing:
        raise ValueError(f"no weight observer found for {missing}")
    converted = convert_pt2e(prepared, fold_quantize=False)
    return PreparedInt8(converted, quantizer, dict(input_grids), output_grid, fixed)


def _residual_span_grid(observed: QuantGrid, span: float) -> QuantGrid | None:
    """The grid of a residual ``f(x)`` cut to ``[-span, span]``, or None where it is inside already.

    Exact: with ``x`` on a site grid of span ``span`` and ``x + f(x)`` saturated on that grid, any
    ``|f(x)| > span`` saturates the output whatever its size; the grid of ``f(x)`` need not hold it.
    Measured on MIT-BIH patient seeds (record 118, a bottleneck adapter at site 3): ``f(x)`` spanned
    ±15.8 where the site spans 3.2, its step was 4.3 site steps, and the kernel alone flipped 7.5 % of
    the beats' decisions; cut to the span it is one step or less.
    """
    lo, hi = observed.real_range()
    if lo >= -span and hi <= span:
        return None
    return QuantGrid.from_range(max(lo, -span), min(hi, span), symmetric=False)


def _cut_residual_to_span(prepared: Any, out_obs: Any, forced: set[Any], site: QuantGrid) -> None:
    """For ``output <- observer <- add(x, g)`` with ``x`` an input on the site grid: g's observer on the
    site's span (see :func:`_residual_span_grid`). Other graphs are left as they are."""
    add = out_obs.args[0] if out_obs.args else None
    if add is None or "add" not in str(getattr(add, "target", "")):
        return
    args = [a for a in add.args if hasattr(a, "op") and _is_observer(a)]
    if len(args) != 2 or not any(a in forced for a in args):
        return
    lo, hi = site.real_range()
    for arg in args:
        if arg in forced:
            continue
        scale, zp = getattr(prepared, arg.target).calculate_qparams()
        cut = _residual_span_grid(QuantGrid(float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])), hi - lo)
        if cut is not None:
            setattr(prepared, arg.target, _int8_act_observer(cut))


def _is_observer(node: Any) -> bool:
    return bool(node.op == "call_module" and "activation_post_process" in str(node.target))


def _observer_after(node: Any, what: str) -> Any:
    """The observer that quantizes ``node``: on it directly, or behind scale-sharing ops (pool, reshape)."""
    seen = node
    for _ in range(16):
        users = [u for u in seen.users if u.op != "call_module" or _is_observer(u)]
        users = [u for u in users if not str(u.target).startswith("_guards")]
        obs = [u for u in users if _is_observer(u)]
        if obs:
            return obs[0]
        if len(users) != 1:
            break
        seen = users[0]
    raise ValueError(f"no activation observer found for {what}")


def _observer_before(output_node: Any) -> Any:
    """The observer that fixes the model's output grid: the last one on the path back from the output.

    Ops the quantizer leaves unannotated (an average pool, a reshape) share their input's grid, so the
    grid that reaches the output is the one of the last observer before them.
    """
    arg = output_node.args[0]
    node = arg[0] if isinstance(arg, tuple | list) else arg
    for _ in range(16):
        if _is_observer(node):
            return node
        inputs = [a for a in node.args if hasattr(a, "op")]
        if not inputs:
            break
        node = inputs[0]
    raise ValueError("no activation observer found before the output")


def _fix_weight_observer(observer: Any, scales: torch.Tensor) -> None:
    """Make a per-channel weight observer report exactly ``scales`` (zero points 0)."""
    import torch

    fixed_scales = scales.detach().to(torch.float32).reshape(-1).clone()
    zeros = torch.zeros_like(fixed_scales, dtype=torch.int64)
    observer.calculate_qparams = lambda: (fixed_scales, zeros)


# ------------------------------------------------------------------ Brevitas QAT


@dataclass
class QatKernel:
    """A kernel trained with Brevitas fake quantization, and what export needs from it."""

    bits: int
    brevitas_module: Any  # brevitas nn.Module (QuantConv1d/QuantLinear with weight_bit_width=bits)
    float_module: nn.Module  # same structure, weights replaced by their dequantized integer grid
    weight_scales: dict[str, torch.Tensor]  # parameter name -> per-output-channel scale
    weight_ints: dict[str, np.ndarray]  # parameter name -> integer weights (|w| <= 2**(bits-1)-1)
    losses: list[float]


def _weight_quant(bits: int) -> Any:
    require("brevitas", "quantization-aware training")
    from brevitas.quant import Int8WeightPerChannelFloat

    return Int8WeightPerChannelFloat.let(bit_width=bits)


def to_brevitas(kernel: nn.Module, bits: int, site_grid: QuantGrid) -> nn.Module:
    """A Brevitas copy of ``kernel``: every Conv1d/Linear gets ``bits``-bit per-channel weights.

    Activations are 8-bit. The kernel's input is fake-quantized on the site grid itself, so training
    sees exactly what the device hands it.
    """
    import copy

    import torch

    require("brevitas", "quantization-aware training")
    from brevitas import nn as qnn

    model = copy.deepcopy(kernel).eval()
    wq = _weight_quant(bits)

    def swap(parent: torch.nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Conv1d):
                q = qnn.QuantConv1d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size[0],
                    stride=child.stride[0],
                    padding=child.padding[0],
                    dilation=child.dilation[0],
                    groups=child.groups,
                    bias=child.bias is not None,
                    weight_quant=wq,
                )
                q.load_state_dict(child.state_dict())
                setattr(parent, name, q)
            elif isinstance(child, torch.nn.Linear):
                q = qnn.QuantLinear(
                    child.in_features, child.out_features, bias=child.bias is not None, weight_quant=wq
                )
                q.load_state_dict(child.state_dict())
                setattr(parent, name, q)
            else:
                swap(child)

    swap(model)
    return _SiteQuantIn(model, site_grid)


_SITE_QUANT_IN: type | None = None


def _SiteQuantIn(inner: nn.Module, grid: QuantGrid) -> nn.Module:  # noqa: N802 - builds a torch class lazily
    """Fake-quantize the input and the output on the site grid (straight-through) around the kernel."""
    global _SITE_QUANT_IN
    if _SITE_QUANT_IN is None:
        import torch

        class SiteQuantIn(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module, grid: QuantGrid) -> None:
                super().__init__()
                self.inner = inner
                self.scale = float(grid.scale)
                self.zero_point = int(grid.zero_point)

            def forward(self, h: torch.Tensor) -> torch.Tensor:
                q = torch.fake_quantize_per_tensor_affine(h, self.scale, self.zero_point, INT8_MIN, INT8_MAX)
                out = self.inner(q)
                # the output lands on the same site grid: training sees that rounding too
                return torch.fake_quantize_per_tensor_affine(
                    out, self.scale, self.zero_point, INT8_MIN, INT8_MAX
                )

        _SITE_QUANT_IN = SiteQuantIn
    return _SITE_QUANT_IN(inner, grid)  # type: ignore[no-any-return]


def qat_kernel(
    kernel: nn.Module,
    site_inputs: torch.Tensor,
    *,
    bits: int,
    site_grid: QuantGrid,
    downstream: nn.Module | None = None,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> QatKernel:
    """Quantization-aware fine-tuning of one seed kernel with ``bits``-bit weights.

    The teacher is the float kernel itself: the loss is the distance between the quantized kernel's
    output and the float kernel's output at the site, plus (when ``downstream`` — the frozen rest of
    the network — is given) the distance between the logits it leads to. No labels are needed, so a
    kernel can be re-quantized from the seed library alone.
    """
    import torch

    torch.manual_seed(seed)
    teacher = kernel.eval()
    student = to_brevitas(kernel, bits, site_grid)
    student.train()
    for p in downstream.parameters() if downstream is not None else []:
        p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = site_inputs.shape[0]
    losses: list[float] = []
    with torch.no_grad():
        target_all = teacher(site_inputs)
        scale_ref = target_all.pow(2).mean().clamp_min(1e-8)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        h, target = site_inputs[idx], target_all[idx]
        out = student(h)
        loss = (out - target).pow(2).mean() / scale_ref
        if downstream is not None:
            with torch.no_grad():
                t_logits = downstream(target)
            loss = loss + (downstream(out) - t_logits).pow(2).mean() / t_logits.pow(2).mean().clamp_min(1e-8)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    student.eval()
    float_module, scales, ints = _dequantized_copy(kernel, student, bits)
    return QatKernel(bits, student, float_module, scales, ints, losses)


def _dequantized_copy(
    kernel: nn.Module, student: nn.Module, bits: int
) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """A plain torch copy of ``kernel`` whose weights are the student's integer weights times scales."""
    import copy

    import torch

    plain = copy.deepcopy(kernel).eval()
    inner: Any = student.inner
    qmax = 2 ** (bits - 1) - 1
    scales: dict[str, torch.Tensor] = {}
    ints: dict[str, np.ndarray] = {}
    quant_layers = {name: m for name, m in inner.named_modules() if hasattr(m, "quant_weight")}
    plain_params = dict(plain.named_parameters())
    with torch.no_grad():
        for name, layer in quant_layers.items():
            qw = layer.quant_weight()
            scale = qw.scale.detach().reshape(-1).to(torch.float32)
            w_int = torch.round(qw.value.detach() / qw.scale.detach()).clamp(-qmax, qmax)
            key = f"{name}.weight"
            shape = [-1] + [1] * (w_int.dim() - 1)
            plain_params[key].copy_(w_int * scale.reshape(shape))
            if layer.bias is not None:
                plain_params[f"{name}.bias"].copy_(layer.bias.detach())
            scales[key] = scale
            ints[key] = w_int.to(torch.int8).numpy()
        # parameters outside quant layers (e.g. a learned gate) follow the student as trained
        for pname, p in inner.named_parameters():
            owner = pname.rsplit(".", 1)[0] if "." in pname else ""
            if owner not in quant_layers and pname in plain_params:
                plain_params[pname].copy_(p.detach())
    return plain, scales, ints
