"""Curriculum stage 4: image<->text retrieval on rendered shapes, a cross-attention seed between the encoders.

The base is a dual encoder (:class:`DualEncoder`): a small CNN turns a 16x16 image into 16 patch vectors,
an embedding + convolution turns a 4-word caption into 4 token vectors, both of width ``dim``; each side is
flattened and projected to a unit embedding and a pair scores their cosine (InfoNCE over the batch). Between
the encoders' last layers and the projections sits one seed site, a :class:`KasminaLayer` on the pair's
joint sequence ``[patches; tokens]`` (B, dim, 16 + 4). Dormant, it is the identity and the model is a plain
dual encoder. The seed this stage grows there, ``text_image_cross_attention``, lets each caption token attend
to the image's patches (plus a learned "nothing here" slot) and adds what it read to the token: a score
then depends on the pair, so it is computed for every (image, caption) pair.

The shift: the same images, their colours and shapes named by words no training caption holds (synonyms the
text encoder has rows for but never learned); the host alone can only go by size and position. The seed is walked
through the lifecycle by the host's driver (:class:`~kasmina_edge.host.seed_driver.SeedDriver`: frozen host,
G0..G4, cull and embargo) on adaptation pairs; full fine-tuning of every weight on the same pairs is the
upper bound. The metric is R@1 (mean of image->text and text->image) on held-out galleries of distinct
captions.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kasmina_edge.contracts.lifecycle import Stage
from kasmina_edge.curriculum.retrieval_data import (
    CAPTION_LEN,
    VOCAB,
    Pairs,
    StageData,
    known_words,
    retrieval_scores,
    stage_splits,
)
from kasmina_edge.curriculum.stage import ArmScore, Say, StageContext, StageReport
from kasmina_edge.host.blueprints import is_registered, register_blueprint
from kasmina_edge.host.blueprints._parts import check_positive, pointwise, zero_
from kasmina_edge.host.kasmina.layer import KasminaLayer

if TYPE_CHECKING:
    from kasmina_edge.host import kasmina as hk
    from kasmina_edge.host.seed_driver import DrivenSeed, SeedDriver

BLUEPRINT = "text_image_cross_attention"
SITE = "fusion"
PATCHES = 16  # a 16x16 image cut into 4x4 patches of 4x4 pixels


# -- the seed ---------------------------------------------------------------------------------------------
def _xattn_params(c: int, context: int, heads: int, head_dim: int) -> int:
    inner = heads * head_dim
    return 3 * c * inner + inner * c + c + inner  # q, k, v, out (+ bias), the null key


def _xattn_macs(c: int, n: int, context: int, heads: int, head_dim: int) -> int:
    inner, t = heads * head_dim, max(n - context, 1)
    return c * inner * t + 2 * c * inner * context + 2 * inner * t * (context + 1) + inner * c * t


def _register_cross_attention() -> None:
    """File the blueprint once per process (host/blueprints has no two-input attention; this one reads the
    other modality from the leading ``context`` positions of the site's joint sequence)."""
    if is_registered(BLUEPRINT):
        return
    register_blueprint(
        BLUEPRINT,
        description="tokens x[:, :, context:] += W_o·softmax(QKᵀ/√d)·V, Q from the tokens, K and V from the first "
        "`context` positions (the image's patches) plus a learned null key; H heads of width d.",
        param_count=_xattn_params,
        macs=_xattn_macs,
        ops=("CONV_2D", "SLICE", "RESHAPE", "TRANSPOSE", "CONCATENATION", "BATCH_MATMUL", "MUL", "SOFTMAX", "ADD"),
        targets=("cortex-m", "linux-arm", "x86"),  # BATCH_MATMUL is outside the Edge TPU's op set
        defaults={"context": PATCHES, "heads": 2, "head_dim": 16},
    )(CrossAttentionAdapter)


class CrossAttentionAdapter(nn.Module):
    """Caption tokens read the image's patches; the patches pass unchanged. Zero output path at birth."""

    def __init__(
        self, channels: int, length: int | None = None, context: int = PATCHES, heads: int = 2, head_dim: int = 16
    ) -> None:
        super().__init__()
        for name, value in (("context", context), ("heads", heads), ("head_dim", head_dim)):
            check_positive(name, BLUEPRINT, value)
        self.context, self.heads, self.head_dim = context, heads, head_dim
        inner = heads * head_dim
        self.q = pointwise(channels, inner, bias=False)
        self.kv = pointwise(channels, 2 * inner, bias=False)
        # attention may go nowhere: a learned key whose value is zero (a caption word the image lacks)
        self.null_key = nn.Parameter(torch.zeros(1, heads, head_dim, 1))
        self.out = zero_(pointwise(inner, channels, bias=True))
        self.scale = 1.0 / math.sqrt(head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _c, n = x.shape
        ctx, tok = x[:, :, : self.context], x[:, :, self.context :]
        h, d, t = self.heads, self.head_dim, n - self.context
        q = self.q(tok).reshape(b, h, d, t)
        k, v = self.kv(ctx).reshape(b, 2, h, d, self.context).unbind(1)
        k = torch.cat([k, self.null_key.expand(b, h, d, 1)], dim=3)
        v = torch.cat([v, torch.zeros_like(v[..., :1])], dim=3)
        att = torch.softmax(q.transpose(2, 3) @ k * self.scale, dim=-1)  # (B, H, T, P + 1)
        y = (att @ v.transpose(2, 3)).transpose(2, 3).reshape(b, h * d, t)
        return torch.cat([ctx, tok + self.out(y)], dim=2)


_register_cross_attention()


# -- the base ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrievalConfig:
    dim: int = 32  # width of patches and tokens (the site's channels)
    embed: int = 32  # the joint embedding
    vocab: int = len(VOCAB)
    tokens: int = CAPTION_LEN

    def site_shapes(self) -> dict[str, tuple[int, int]]:
        """What the seed driver reads: (channels, length) of each site."""
        return {SITE: (self.dim, PATCHES + self.tokens)}


class ImageEncoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        # 4x4 patches embedded (as a ViT's stem), then mixed with their neighbours: cheap on two cores
        self.convs = nn.Sequential(nn.Conv2d(3, 32, 4, stride=4), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(32, dim, 1))  # fmt: skip
        self.pos = nn.Parameter(torch.zeros(1, dim, PATCHES))  # where a patch is (the captions name positions)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.convs(img).flatten(2) + self.pos  # (B, dim, 16)


class TextEncoder(nn.Module):
    def __init__(self, vocab: int, dim: int, tokens: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, dim, tokens))
        self.mix = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv1d(dim, dim, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mix(self.embed(tokens).transpose(1, 2) + self.pos)  # (B, dim, T)


class LogitScale(nn.Module):
    """The InfoNCE temperature, learned (as CLIP's), clamped so logits stay bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(0.0, math.log(50.0)).exp()


class DualEncoder(nn.Module):
    """``blocks`` (the encoders), ``sites`` and ``head`` (projections, temperature): the attributes the seed
    driver reads of a host model."""

    def __init__(self, config: RetrievalConfig, *, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c = self.config = config
        self.blocks = nn.ModuleDict({"image": ImageEncoder(c.dim), "text": TextEncoder(c.vocab, c.dim, c.tokens)})
        self.sites = nn.ModuleDict({SITE: KasminaLayer(c.dim, 1, 0, length=PATCHES + c.tokens)})
        self.head = nn.ModuleDict({
            "image": nn.Linear(c.dim * PATCHES, c.embed),
            "text": nn.Linear(c.dim * c.tokens, c.embed),
            "scale": LogitScale(),
        })  # fmt: skip

    def host_parameters(self) -> list[nn.Parameter]:
        return [*self.blocks.parameters(), *self.head.parameters()]

    def encode(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.blocks["image"](images), self.blocks["text"](tokens)

    def embed(self, joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit embeddings of image and caption from the site's joint sequence (B, dim, 16 + T)."""
        img = self.head["image"](joint[:, :, :PATCHES].flatten(1))
        txt = self.head["text"](joint[:, :, PATCHES:].flatten(1))
        return F.normalize(img, dim=1), F.normalize(txt, dim=1)

    def seed_live(self) -> bool:
        """Whether a seed at the site changes the output (then scores must be computed per pair)."""
        layer: KasminaLayer = self.sites[SITE]  # type: ignore[assignment]
        return any(s.stage in (Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY, Stage.FOSSILIZED) for s in layer.seeds())

    def dual_scores(self, patches: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(Ni, Nt) logits with the site dormant: each side embedded once."""
        img, _ = self.embed(torch.cat([patches, tokens[:1].expand(len(patches), -1, -1)], dim=2))
        _, txt = self.embed(torch.cat([patches[:1].expand(len(tokens), -1, -1), tokens], dim=2))
        return self.head["scale"]() * img @ txt.T

    @staticmethod
    def pair_inputs(patches: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Every (image, caption) pair's joint sequence, image-major: row i * Nt + j is (image i, caption j)."""
        ni, nt = len(patches), len(tokens)
        return torch.cat([patches.repeat_interleave(nt, 0), tokens.repeat(ni, 1, 1)], dim=2)

    def pair_joint(self, patches: torch.Tensor, tokens: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """The pairs' joint sequences through the site: (Ni * Nt, dim, 16 + T). ``seen``: other patches for the
        seed to read in place of each pair's own (an ablation: how much of its gain needs the right image)."""
        joint = self.sites[SITE](self.pair_inputs(patches if seen is None else seen, tokens))
        return joint if seen is None else torch.cat([self.pair_inputs(patches, tokens)[:, :, :PATCHES],
                                                     joint[:, :, PATCHES:]], dim=2)  # fmt: skip

    def pair_logits(self, joint: torch.Tensor, ni: int, nt: int) -> torch.Tensor:
        img, txt = self.embed(joint)
        return self.head["scale"]() * (img * txt).sum(1).reshape(ni, nt)

    def scores(
        self, patches: torch.Tensor, tokens: torch.Tensor, *, seen: torch.Tensor | None = None, chunk: int = 32
    ) -> torch.Tensor:
        if not self.seed_live():
            return self.dual_scores(patches, tokens)
        parts = [(patches[i : i + chunk], None if seen is None else seen[i : i + chunk])
                 for i in range(0, len(patches), chunk)]  # fmt: skip
        return torch.cat([self.pair_logits(self.pair_joint(p, tokens, v), len(p), len(tokens)) for p, v in parts])


# -- training and scoring ---------------------------------------------------------------------------------
def tensors(pairs: Pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.from_numpy(pairs.images), torch.from_numpy(pairs.tokens), torch.from_numpy(pairs.combos)


def info_nce(logits: torch.Tensor, combos: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; another pair of the batch with the same caption is no negative (masked out)."""
    same = (combos[:, None] == combos[None, :]) & ~torch.eye(len(combos), dtype=torch.bool)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(combos))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def evaluate(model: DualEncoder, gallery: Pairs, *, other_image: bool = False) -> dict[str, float]:
    """R@1, R@5 both ways on a gallery of distinct captions; ``other_image``: the seed reads the next image's
    patches, not the scored one's."""
    model.eval()
    img, tok, _ = tensors(gallery)
    patches, tokens = model.encode(img, tok)
    return retrieval_scores(model.scores(patches, tokens, seen=patches.roll(1, 0) if other_image else None).numpy())


def evaluate_many(model: DualEncoder, galleries: list[Pairs], *, other_image: bool = False) -> dict[str, float]:
    """The mean of each figure over several galleries (a steadier estimate than one)."""
    runs = [evaluate(model, g, other_image=other_image) for g in galleries]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def count_params(params: list[nn.Parameter] | Any) -> int:
    return int(sum(p.numel() for p in params))


def train_dual(
    model: DualEncoder, data: Pairs, val: Pairs, *, epochs: int, lr: float, batch: int, seed: int,
    say: Say | None = None, label: str = "base",
) -> DualEncoder:  # fmt: skip
    """Every host weight trained with InfoNCE (the site dormant); the epoch with the best val R@1 is kept."""
    params = model.host_parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    img, tok, combos = tensors(data)
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(combos), generator=gen).split(batch):
            opt.zero_grad(set_to_none=True)
            loss = info_nce(model.dual_scores(*model.encode(img[idx], tok[idx])), combos[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        sched.step()
        r1 = evaluate(model, val)["r1"]
        if r1 > best:
            best, best_state = r1, copy.deepcopy(model.state_dict())
        if say is not None:
            say(f"retrieval: {label} epoch {epoch + 1}/{epochs}, val R@1 {r1:.3f}")
    model.load_state_dict(best_state)
    return model.eval()


# -- the seed's walk --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrievalSettings:
    n_train: int = 8000  # clean pairs the base learns
    base_epochs: int = 16
    base_lr: float = 3e-3
    batch: int = 64
    n_adapt: int = 1200  # shifted pairs the seed (and fine-tuning) learn from
    n_replay: int = 600  # clean pairs mixed in (a seed must not break the captions the base knows)
    keep_weight: float = 2.0  # the seed's change to the tokens of those clean captions, penalised
    gallery: int = 128  # distinct captions per retrieval gallery (chance R@1 = 1/128)
    test_galleries: int = 4  # held-out galleries per test set (the figures are their mean)
    seed_epochs: int = 16
    seed_lr: float = 1e-2
    seed_batch: int = 48  # pairs per step: 48 x 48 pair scores
    blend_steps: int = 5
    blend_batches: int = 6
    fine_tune_epochs: int = 16
    fine_tune_lr: float = 2e-3
    heads: int = 4
    head_dim: int = 16
    target: float = 0.5  # R@1 on the shifted test galleries
    global_tolerance: float = 0.1  # G4: R@1 on clean captions may fall by at most this
    min_gain: float = 0.05  # G4: R@1 gain over the host on the shifted validation gallery
    max_drift: float = 3.0
    max_oscillation: float = 0.05


FULL = RetrievalSettings()
QUICK = replace(FULL, n_train=4000, base_epochs=8, n_adapt=1000, n_replay=500, test_galleries=2, seed_epochs=16,
                seed_batch=32, blend_steps=4, fine_tune_epochs=6)  # fmt: skip


def stage_data(s: RetrievalSettings, seed: int, shift: str = "synonyms") -> StageData:
    return stage_splits(n_train=s.n_train, n_adapt=s.n_adapt, n_replay=s.n_replay, gallery=s.gallery,
                        test_galleries=s.test_galleries, seed=seed, shift=shift)  # fmt: skip


@torch.no_grad()
def encode_pairs(model: DualEncoder, pairs: Pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frozen encoders' output (patches, tokens) and combos: computed once, the host never changes."""
    img, tok, combos = tensors(pairs)
    return (*model.encode(img, tok), combos)


class RetrievalRecipe:
    """How the cross-attention seed trains, blends and is judged (the host's driver walks the stages).

    TRAINING: the model's output stays the host's (checked bit for bit on probe pairs every epoch); the seed
    learns InfoNCE over every pair of the batch from the layer's incubator output. BLENDING: the seed trains on
    the live output between grafting steps. SHADOWING: agreement of the seeded top-1 with the host's. G4: the
    gain on the shifted validation gallery over the pre-germination host, clean captions within tolerance.
    """

    def __init__(self, driver: SeedDriver, data: StageData, s: RetrievalSettings, say: Say) -> None:
        self.d, self.s, self.say = driver, s, say
        self.model: DualEncoder = driver.model  # type: ignore[assignment]
        self.layer: KasminaLayer = self.model.sites[SITE]  # type: ignore[assignment]
        self.model.eval()
        self.adapt = encode_pairs(self.model, data.adapt)
        self.shift_val = encode_pairs(self.model, data.shift_val)
        self.clean_val = encode_pairs(self.model, data.clean_val)
        self.known = torch.from_numpy(known_words(data.adapt.tokens))
        self.token_var = float(self.adapt[1].var()) + 1e-6
        self.baseline, self.clean_host = self.metric(self.shift_val), self.metric(self.clean_val)
        self.host_top1 = self._top1(self.shift_val)
        self.probe = (self.adapt[0][:16], self.adapt[1][:16])
        self.host_probe = self._probe_logits()
        self.batches: Any = iter(())
        self.seed_val = self.clean_seed = float("nan")  # measured at G4
        self.bit_exact: bool | None = None

    @torch.no_grad()
    def metric(self, enc: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
        return retrieval_scores(self.model.scores(enc[0], enc[1]).numpy(), ks=(1,))["r1"]

    @torch.no_grad()
    def _top1(self, enc: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.model.scores(enc[0], enc[1]).argmax(1)

    @torch.no_grad()
    def _probe_logits(self) -> torch.Tensor:
        p, t = self.probe
        return self.model.pair_logits(self.model.pair_joint(p, t), len(p), len(t))

    def _next_batch(self) -> torch.Tensor:
        idx = next(self.batches, None)
        if idx is None:
            self.batches = iter(torch.randperm(len(self.adapt[2]), generator=self.d.gen).split(self.s.seed_batch))
            idx = next(self.batches)
        return idx  # type: ignore[no-any-return]

    def _loss(self, idx: torch.Tensor, *, incubator: bool) -> torch.Tensor:
        """InfoNCE over every pair of the batch, plus the keep term: on a caption in words the host knows the
        seed should change nothing (its tokens pulled to the host's, as the ECG recipes' denoising)."""
        p, t, combos = (x[idx] for x in self.adapt)
        n = len(idx)
        joint_in = self.model.pair_inputs(p, t)
        joint = self.layer(joint_in)
        if incubator:  # TRAINING: the output is the host's; the seed's own is the incubator's
            inc = self.layer.incubator_output()
            assert inc is not None
            joint = inc
        loss = info_nce(self.model.pair_logits(joint, n, n), combos)
        known = self.known[idx].repeat(n)  # pair (i, j) -> is caption j in known words
        if self.s.keep_weight > 0 and bool(known.any()):
            change = (joint - joint_in)[known][:, :, PATCHES:]
            loss = loss + self.s.keep_weight * change.pow(2).mean() / self.token_var
        return loss

    def train(self, driver: SeedDriver, seeds: list[DrivenSeed]) -> bool:
        from kasmina_edge.host.kasmina import bit_equal

        (seed,) = seeds
        opt, sid = driver.opt, seed.seed_id
        assert opt is not None
        self.say("retrieval: seed TRAINING (the host's output unchanged, the seed learns behind it)")
        exact, steps = True, -(-len(self.adapt[2]) // self.s.seed_batch)
        for epoch in range(self.s.seed_epochs):
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = self._loss(self._next_batch(), incubator=True)
                self.layer.seed_backward(loss)
                if driver.engine.stage(sid) is not Stage.TRAINING:  # the isolation breaker culled it
                    self.bit_exact = False
                    return False
                opt.step()
                driver.clock.advance(1.0)
            exact = exact and bit_equal(self._probe_logits(), self.host_probe)
            self.layer.end_epoch()
            driver.emit({"event": "train_epoch", "seed_id": sid, "epoch": epoch + 1, "bit_exact": exact,
                         "loss": float(loss.detach())})  # fmt: skip
        self.bit_exact = exact
        return exact

    def gradient_health(self, seed: DrivenSeed) -> hk.GradientHealthInputs:
        n = len(self.layer.gradient_health_inputs(seed.seed_id).seed_losses)
        return self.layer.gradient_health_inputs(seed.seed_id, window=n)  # the whole history's thirds

    def start_blending(self) -> None:
        self.say("retrieval: seed BLENDING (alpha ramps while the seed trains on the live output)")

    def blend_metric(self) -> float:
        return self.metric(self.shift_val)

    def blend_signals(self, seed: DrivenSeed, metric: float) -> hk.GraftSignals:
        from kasmina_edge.host.kasmina import GraftSignals

        grad = self.layer.gradient_health_inputs(seed.seed_id).grad_norms
        return GraftSignals(val_metric=metric, baseline_metric=self.baseline, grad_norm=grad[-1] if grad else None)

    def blend_note(self, metric: float, signals: hk.GraftSignals) -> dict[str, Any]:
        return {"val_r1_before": metric}

    def after_blend_step(self) -> None:
        opt = self.d.opt
        assert opt is not None
        for _ in range(self.s.blend_batches):
            opt.zero_grad(set_to_none=True)
            self._loss(self._next_batch(), incubator=False).backward()  # type: ignore[no-untyped-call]
            opt.step()
            self.d.clock.advance(1.0)

    def stability(self, seed: DrivenSeed, measured: hk.StabilityInputs) -> hk.StabilityInputs:
        return measured

    def shadow_agreement(self) -> float:
        self.say("retrieval: seed SHADOWING, then PROBATIONARY (G4 on the shifted and the clean gallery)")
        return float((self._top1(self.shift_val) == self.host_top1).float().mean())

    def impact(self, seeds: list[DrivenSeed]) -> dict[str, hk.SystemImpactInputs]:
        self.seed_val, self.clean_seed = self.metric(self.shift_val), self.metric(self.clean_val)
        return {
            s.seed_id: self.layer.system_impact_inputs(
                s.seed_id, self.seed_val, global_metric=self.clean_seed, global_reference=self.clean_host,
                tolerance=self.s.global_tolerance, min_gain=self.s.min_gain,
            )  # fmt: skip
            for s in seeds
        }

    def after_probation(self, seeds: list[DrivenSeed]) -> None:
        return None


@dataclass
class SeedWalk:
    model: DualEncoder  # the host with the seed as the walk left it (identity at the site if culled)
    seed: DrivenSeed
    recipe: RetrievalRecipe
    events: list[dict[str, Any]]
    seed_params: int  # parameters of the seed (0 where it did not fossilize)


def grow_seed(base: DualEncoder, data: StageData, s: RetrievalSettings, *, seed: int, say: Say) -> SeedWalk:
    """One cross-attention seed at the fusion site, germinated (G0) and walked to FOSSILIZED or CULLED."""
    from kasmina_edge.host.seed_driver import DriverLimits, SeedDriver, SeedSpec
    from kasmina_edge.host.tamiyo.masks import Budget

    torch.manual_seed(seed)
    limits = DriverLimits(s.seed_lr, s.blend_steps, s.max_oscillation, s.max_drift)
    budget = Budget(target=None, max_params=count_params(base.host_parameters()) // 4)  # a seed is small
    driver = SeedDriver(base, budget, limits, seed=seed, watch=[SITE])  # type: ignore[arg-type]
    recipe = RetrievalRecipe(driver, data, s, say)
    spec = SeedSpec(SITE, BLUEPRINT, "fixed_ramp", params={"context": PATCHES, "heads": s.heads, "head_dim": s.head_dim})
    (grown,) = driver.germinate([spec], recipe.baseline)  # G0, then GERMINATED -> TRAINING
    driver.run(recipe)
    fossil = grown.final_stage == Stage.FOSSILIZED.name
    params = count_params(driver.layer(grown).seed_parameters(grown.seed_id)) if fossil else 0
    driver.release_embargoes()  # a culled seed waits out its embargo; its slot is reset behind G5
    return SeedWalk(driver.model, grown, recipe, driver.events, params)  # type: ignore[arg-type]


# -- the stage --------------------------------------------------------------------------------------------
def host_unchanged(base: DualEncoder, grown: DualEncoder) -> bool:
    """Every host weight of the seeded model equal, bit for bit, to the base's (the seed trained alone)."""
    return all(torch.equal(a, b) for a, b in zip(base.host_parameters(), grown.host_parameters(), strict=True))


def _arm(figures: dict[str, float], clean: dict[str, float], params: int, **detail: Any) -> ArmScore:
    return ArmScore(metric=figures["r1"], params=params, detail={"shifted": figures, "clean": clean, **detail})


@dataclass
class RetrievalStage:
    """Stage 4: captions with unseen words (colour and shape synonyms) for a base that knows only the originals."""

    index: int = 4
    name: str = "retrieval"
    domain: str = "image<->text retrieval (rendered shapes and captions)"
    shift: str = "synonyms"
    settings: RetrievalSettings | None = None  # None: QUICK or FULL by ctx.quick

    def run(self, ctx: StageContext) -> StageReport:
        # One thread: the model is tiny, and two threads on a shared two-core machine spin rather than work
        # (measured here: the quick stage took 5x the CPU time under pytest's default of two).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run(ctx, self.settings or (QUICK if ctx.quick else FULL))
        finally:
            torch.set_num_threads(threads)

    def _run(self, ctx: StageContext, s: RetrievalSettings) -> StageReport:
        t0, say = time.perf_counter(), ctx.say
        data = stage_data(s, ctx.seed, self.shift)
        say(f"retrieval: base dual encoder on {s.n_train} clean pairs ({s.base_epochs} epochs)")
        base = train_dual(DualEncoder(RetrievalConfig(), seed=ctx.seed), data.train, data.clean_val,
                          epochs=s.base_epochs, lr=s.base_lr, batch=s.batch, seed=ctx.seed, say=say)  # fmt: skip
        base_params = count_params(base.host_parameters())
        base_arm = _arm(evaluate_many(base, data.shift_tests), evaluate_many(base, data.clean_tests), base_params)
        say(f"retrieval: base R@1 {base_arm.metric:.3f} on shifted captions (target {s.target}); growing a seed")
        walk = grow_seed(base, data, s, seed=ctx.seed, say=say)
        seeded_arm = _arm(evaluate_many(walk.model, data.shift_tests), evaluate_many(walk.model, data.clean_tests),
                          walk.seed_params, final_stage=walk.seed.final_stage, reason=walk.seed.reason,
                          seed_id=walk.seed.seed_id, blueprint=BLUEPRINT,
                          shifted_r1_seed_reads_other_image=evaluate_many(walk.model, data.shift_tests,
                                                                          other_image=True)["r1"])  # fmt: skip
        say(f"retrieval: full fine-tuning on the same {len(data.adapt)} pairs ({s.fine_tune_epochs} epochs)")
        tuned = train_dual(copy.deepcopy(base), data.adapt, data.shift_val, epochs=s.fine_tune_epochs,
                           lr=s.fine_tune_lr, batch=s.batch, seed=ctx.seed, label="fine-tune")  # fmt: skip
        tuned_arm = _arm(evaluate_many(tuned, data.shift_tests), evaluate_many(tuned, data.clean_tests), base_params)
        report = StageReport(
            index=self.index, name=self.name, domain=self.domain, metric="R@1", target=s.target,
            base=base_arm, seeded=seeded_arm, fine_tuned=tuned_arm, lifecycle=walk.events,
            checks={
                "seed_fossilized": walk.seed.final_stage == Stage.FOSSILIZED.name,
                "host_frozen": host_unchanged(base, walk.model),
                "output_bit_exact_while_training": bool(walk.recipe.bit_exact),
                "clean_r1_within_tolerance": seeded_arm.detail["clean"]["r1"]
                >= base_arm.detail["clean"]["r1"] - s.global_tolerance,
            },
            notes=self._notes(s, data, walk),
        )  # fmt: skip
        report.seconds = time.perf_counter() - t0
        return report

    def _notes(self, s: RetrievalSettings, data: StageData, walk: SeedWalk) -> list[str]:
        r = walk.recipe
        return [
            f"shift {self.shift!r}: colour and shape words no training caption holds; images unchanged",
            f"R@1 = mean of image->text and text->image over {s.test_galleries} held-out galleries of {s.gallery} "
            f"distinct captions (chance {1 / s.gallery:.3f}); R@5 and each direction in detail",
            f"seed {BLUEPRINT} ({s.heads} heads x {s.head_dim}) at the fusion site; adaptation: {s.n_adapt} shifted "
            f"+ {s.n_replay} clean pairs ({len(data.adapt)}), the same for fine-tuning",
            f"G4 on the validation galleries: shifted host {r.baseline:.3f}, seed {r.seed_val:.3f}; "
            f"clean host {r.clean_host:.3f}, seed {r.clean_seed:.3f}",
            "settings: " + ("quick" if s == QUICK else "full" if s == FULL else "custom") + f" ({s})",
        ]


def retrieval_stage() -> RetrievalStage:
    """The registry's factory (``kasmina_edge.curriculum.retrieval:retrieval_stage``)."""
    return RetrievalStage()
