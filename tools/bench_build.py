"""Benchmark the ahead-of-time build per target: accuracy fp32 / int8 / 4-bit, sizes, build time,
the Edge TPU report, and flash per kernel and per bundle for int8 vs 4-bit (kernel_flash). Prints a rich
table and writes JSON.

    .venv/bin/python tools/bench_build.py                      # default model, all targets
    .venv/bin/python tools/bench_build.py --config tiny        # the demo's model (fast)
    .venv/bin/python tools/bench_build.py --checkpoint runs/base.pt --seeds runs/seeds

Without --checkpoint the base model is trained (host presets; cached under --work). The seed library
is --seeds when it holds seeds; otherwise (morph culls every seed whose gain is below its gate) the
bench grows its own: seed kernels of registered blueprints at three sites, trained with the base
frozen on the training patients, written with the host's SeedLibrary so the build reads a real one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("edgetpu", "cortex-m", "linux-arm", "x86")
# blueprints and sites of the bench's own seeds; each is kept within morph's budget (10 % of the base)
BENCH_SEEDS = (("bottleneck_adapter", 1), ("depthwise_separable", 2), ("low_rank_residual", 3))


def train_base(config: str, out: Path, con: Console) -> Path:
    if out.exists():
        con.print(f"base checkpoint: {out} (cached)")
        return out
    from kasmina_edge.host.train_run import TrainOptions, train_from_options

    train_from_options(TrainOptions(config=config, out=out))
    return out


def make_library(checkpoint: Path, out: Path, con: Console, steps: int = 200, seed: int = 0) -> Path:
    """Seed kernels trained with the base frozen (one per (blueprint, site) in BENCH_SEEDS)."""
    import copy

    import numpy as np
    import torch

    from kasmina_edge.host.blueprints import create_blueprint, get_blueprint
    from kasmina_edge.host.seed_library import LibraryEntry, SeedLibrary
    from kasmina_edge.host.train import TrainConfig, class_weights, evaluate, load_base, synthetic_split

    if (out / "library.json").exists() and json.loads((out / "library.json").read_text())["seeds"]:
        con.print(f"seed library: {out} (cached)")
        return out
    base, ckpt = load_base(checkpoint)
    cfg = TrainConfig(**ckpt["train_config"])
    split = synthetic_split(cfg)
    x = torch.from_numpy(split.train.windows)
    rr = torch.from_numpy(split.train.rr)
    y = torch.from_numpy(split.train.labels)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(split.train.labels))
    base_val = evaluate(base, split.val).macro_f1
    n_base = sum(p.numel() for p in base.host_parameters())
    lib = SeedLibrary(
        meta={
            "experiment_id": f"bench-{int(time.time())}",
            "model_config": base.config.to_dict(),
            "source": "tools/bench_build.py",
        }
    )
    g = torch.Generator().manual_seed(seed)
    for bp, site_index in BENCH_SEEDS:
        site = base.config.site_names[site_index]
        c, length = base.config.site_shapes()[site]
        torch.manual_seed(seed + site_index)
        module = create_blueprint(bp, c, length)
        model = copy.deepcopy(base)
        model.sites[site] = module
        for p in model.host_parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(module.parameters(), lr=2e-3)
        module.train()
        for _ in range(steps):
            idx = torch.randint(0, len(y), (128,), generator=g)
            loss = loss_fn(model(x[idx], rr[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.eval()
        seed_val = evaluate(model, split.val).macro_f1
        spec = get_blueprint(bp)
        params = sum(p.numel() for p in module.parameters())
        key = f"bench-{bp}@{site}"
        lib.entries[key] = LibraryEntry(
            key=key, condition="bench", tags=["bench"], site=site, site_index=site_index, channels=c, length=length,
            blueprint=bp, blueprint_params={}, grafting="none", intensity=1.0, param_count=params,
            param_fraction=params / n_base, macs=spec.macs(c, length), baseline_val=float(base_val),
            seed_val=float(seed_val), gain=float(seed_val - base_val), clean_host=None, clean_seed=None,
            seed_id=f"{site}/all",
        )  # fmt: skip
        lib.states[key] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        con.print(
            f"seed {key}: {params} parameters, val macro-F1 {100 * base_val:.1f} → {100 * seed_val:.1f}"
        )
    del np
    lib.save(out)
    return out


def bench_keys(work: Path) -> Path:
    """The bench signs with keys of its own (made once under --work), never the user's."""
    from kasmina_edge.contracts.bundle import init_keys

    keys = work / "keys"
    if not (keys / "bundle-signing.key").exists():
        init_keys(keys)
    return keys


def bench_target(
    target: str, bits: int, checkpoint: Path, seeds: Path, work: Path, con: Console
) -> dict[str, Any]:
    from kasmina_edge.compile.pipeline import BuildRequest, build

    out = work / f"{target}-{bits}bit.kedge"
    keys = bench_keys(work)
    t0 = time.perf_counter()
    result = build(
        BuildRequest(
            checkpoint=checkpoint, seeds=seeds, target=target, bits=bits, out=out, keys=keys, strict=False
        ),
        con,  # a missed parity bound is recorded and listed after the table (`build --strict` raises it)
    )
    wall = time.perf_counter() - t0
    rep = result.report
    return {
        "target": target,
        "bits": bits,
        "wall_s": round(wall, 2),
        "parity_misses": list(result.parity_misses),
        "report": rep.to_dict(),
    }


def kernel_flash(work: Path, target: str) -> dict[str, Any] | None:
    """Flash per kernel and per bundle, int8 vs 4-bit, from the two bundles built for ``target``: the int8 file,
    the 4-bit file as loaded, its weights packed alone (KP4 v2) and as shipped (KP4 v3: graph deflated too), and
    the int8 file deflated the same way (what the layout alone would save); TFLite Micro arenas of both."""
    import zlib

    from firmware_sim.fit import runnable_bytes
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.core.pack4 import artifact_payload, pack_file, tflite_int4_ranges

    paths = {bits: work / f"{target}-{bits}bit.kedge" for bits in (8, 4)}
    if not all(p.exists() for p in paths.values()):
        return None
    keys = bench_keys(work)
    b8, b4 = read_bundle(paths[8], keys), read_bundle(paths[4], keys)

    def arenas(b: Any) -> dict[str, Any]:
        rep = json.loads(b.files.get("report.json", b"{}"))
        return dict((rep.get("memory") or {}).get("arenas") or {})

    a8, a4 = arenas(b8), arenas(b4)
    rows = []
    for entry in b4.manifest.kernels():
        if entry.name not in {k.name for k in b8.manifest.kernels()}:
            continue
        int8 = artifact_payload(b8, b8.manifest.artifact(entry.name))
        four = artifact_payload(b4, entry)  # unpacked: what the interpreter loads
        ranges = tflite_int4_ranges(four) if entry.format.startswith("tflite") else []
        rows.append({
            "kernel": entry.name, "int8_bytes": len(int8), "int8_deflated_bytes": len(zlib.compress(int8, 9)),
            "4bit_file_bytes": len(four), "4bit_weights_only_bytes": len(pack_file(four, ranges)) if ranges else None,
            "4bit_shipped_bytes": entry.bytes, "shipped_vs_int8": entry.bytes / len(int8),
            "arena_int8": a8.get(entry.name), "arena_4bit": a4.get(entry.name),
        })
    return {"target": target, "kernels": rows, "bundle_flash_int8": runnable_bytes(b8),
            "bundle_flash_4bit": runnable_bytes(b4),
            "all_35pct_smaller": bool(rows) and all(r["shipped_vs_int8"] <= 0.65 for r in rows)}


def render_flash(flash: list[dict[str, Any]], con: Console) -> None:
    t = Table(title="flash per kernel, int8 vs 4-bit (bytes; shipped = KP4 v3: nibbles + deflated graph)")
    for col in ("target", "kernel", "int8", "int8 deflated", "4-bit file", "4-bit weights packed", "4-bit shipped",
                "shipped/int8", "arena int8 / 4-bit"):
        t.add_column(col, justify="left" if col in ("target", "kernel") else "right")
    for f in flash:
        for r in f["kernels"]:
            t.add_row(f["target"], r["kernel"], f"{r['int8_bytes']:,}", f"{r['int8_deflated_bytes']:,}",
                      f"{r['4bit_file_bytes']:,}", f"{r['4bit_weights_only_bytes'] or 0:,}", f"{r['4bit_shipped_bytes']:,}",
                      f"{r['shipped_vs_int8']:.2f}", f"{r['arena_int8'] or '-'} / {r['arena_4bit'] or '-'}")
    con.print(t)
    for f in flash:
        con.print(f"{f['target']}: bundle flash (segments, kernels, policy) int8 {f['bundle_flash_int8']:,} B, 4-bit "
                  f"{f['bundle_flash_4bit']:,} B; every 4-bit kernel >= 35 % smaller than int8: {f['all_35pct_smaller']}")


def _f1(run: dict[str, Any], dataset: str, config: str, which: str) -> float | None:
    for row in run["report"]["accuracy"]:
        if row["dataset"] == dataset and row["configuration"] == config:
            return float(row[which])
    return None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_target: dict[str, Any] = {}
    for target in TARGETS:
        r8 = next((r for r in runs if r["target"] == target and r["bits"] == 8), None)
        r4 = next((r for r in runs if r["target"] == target and r["bits"] == 4), None)
        if r8 is None:
            continue
        entry: dict[str, Any] = {"format": r8["report"]["format"], "build_wall_s_int8": r8["wall_s"]}
        entry["parity_misses"] = [
            f"{r['bits']}-bit: {m}" for r in (r8, r4) if r for m in r.get("parity_misses", [])
        ]
        datasets = sorted({row["dataset"] for row in r8["report"]["accuracy"]})
        acc: dict[str, Any] = {}
        for ds in datasets:
            cfg = "morphed" if _f1(r8, ds, "morphed", "fp32_macro_f1") is not None else "base"
            fp32 = _f1(r8, ds, cfg, "fp32_macro_f1")
            q8 = _f1(r8, ds, cfg, "quant_macro_f1")
            q4 = _f1(r4, ds, cfg, "quant_macro_f1") if r4 else None
            acc[ds] = {
                "configuration": cfg,
                "fp32": fp32,
                "int8": q8,
                "4bit": q4,
                "int8_delta_points": None if fp32 is None or q8 is None else round(100 * (q8 - fp32), 3),
                "4bit_delta_points": None if fp32 is None or q4 is None else round(100 * (q4 - fp32), 3),
                "int8_within_1pt": None if fp32 is None or q8 is None else abs(100 * (q8 - fp32)) <= 1.0,
                "4bit_within_3pt": None if fp32 is None or q4 is None else abs(100 * (q4 - fp32)) <= 3.0,
                "int8_argmax_agreement": _f1(r8, ds, cfg, "argmax_agreement"),
                "4bit_argmax_agreement": _f1(r4, ds, cfg, "argmax_agreement") if r4 else None,
            }
        entry["accuracy"] = acc
        entry["bundle_bytes_int8"] = r8["report"]["bundle_bytes"]
        entry["artifacts_int8"] = {a["name"]: a["bytes"] for a in r8["report"]["artifacts"]}
        k8 = {a["name"]: a["bytes"] for a in r8["report"]["artifacts"] if a["kind"] == "kernel"}
        entry["kernel_bytes_int8"] = k8
        if r4:
            entry["build_wall_s_4bit"] = r4["wall_s"]
            entry["bundle_bytes_4bit"] = r4["report"]["bundle_bytes"]
            entry["kernels_4bit"] = {
                a["name"]: {
                    "unpacked_bytes": a["bytes"],
                    "packed_bytes": a["packed_bytes"],
                    "int8_bytes": k8.get(a["name"]),
                }
                for a in r4["report"]["artifacts"]
                if a["kind"] == "kernel"
            }
        else:
            entry["4bit"] = "not allowed for this target (targets/*.toml bits_allowed)"
        if "cache_bytes" in r8["report"]["target_mapping"]:
            m = r8["report"]["target_mapping"]
            entry["edgetpu"] = {
                k: m[k]
                for k in (
                    "ops_mapped",
                    "ops_cpu",
                    "cache_used_bytes",
                    "cache_bytes",
                    "fits_cache",
                    "compiler",
                )
            }
            entry["edgetpu"]["per_model"] = [
                {
                    "name": x["name"],
                    "ops_mapped": x["ops_mapped"],
                    "ops_total": x["ops_total"],
                    "cpu_from": x["cpu_from"],
                    "parameter_bytes": x["parameter_bytes"],
                }
                for x in m["models"]
            ]
        if r8["report"]["memory"].get("sram_bytes") is not None:
            entry["tflite_micro"] = {
                k: r8["report"]["memory"][k]
                for k in ("flash_bytes", "flash_limit", "sram_bytes", "sram_limit")
            }
        by_target[target] = entry
    return by_target


def render(summary: dict[str, Any], con: Console) -> None:
    t = Table(title="build per target: macro-F1 % (fp32 / int8 / 4-bit; Δ points vs fp32)")
    for col in (
        "target",
        "data",
        "fp32",
        "int8",
        "Δ8",
        "4-bit",
        "Δ4",
        "argmax agree % (8/4)",
        "bundle B (8/4)",
        "build s (8/4)",
    ):
        t.add_column(col, justify="left" if col in ("target", "data") else "right")
    for target, e in summary.items():
        for i, (ds, a) in enumerate(e["accuracy"].items()):

            def pct(v: float | None) -> str:
                return "-" if v is None else f"{100 * v:.2f}"

            def d(v: float | None, ok: bool | None) -> str:
                return "-" if v is None else f"{v:+.2f}" + ("" if ok else " [red]✗[/]")

            t.add_row(
                target if i == 0 else "",
                f"{ds} ({a['configuration']})",
                pct(a["fp32"]),
                pct(a["int8"]),
                d(a["int8_delta_points"], a["int8_within_1pt"]),
                pct(a["4bit"]),
                d(a["4bit_delta_points"], a["4bit_within_3pt"]),
                pct(a["int8_argmax_agreement"]) + " / " + pct(a["4bit_argmax_agreement"]),
                f"{e['bundle_bytes_int8']:,}"
                + (f" / {e['bundle_bytes_4bit']:,}" if "bundle_bytes_4bit" in e else "")
                if i == 0
                else "",
                f"{e['build_wall_s_int8']:.1f}"
                + (f" / {e['build_wall_s_4bit']:.1f}" if "build_wall_s_4bit" in e else "")
                if i == 0
                else "",
            )
    con.print(t)
    misses = [f"{target} {m}" for target, e in summary.items() for m in e.get("parity_misses", [])]
    for m in misses:
        con.print(f"[bold yellow]parity bound missed[/] (bundle written; `build --strict` refuses it): {m}")
    k = Table(title="seed kernels: int8 vs 4-bit (packed two per byte) bytes")
    for col in ("target", "kernel", "int8", "4-bit unpacked", "4-bit packed", "packed/int8"):
        k.add_column(col, justify="left" if col in ("target", "kernel") else "right")
    for target, e in summary.items():
        for name, v in e.get("kernels_4bit", {}).items():
            ratio = v["packed_bytes"] / v["int8_bytes"] if v.get("int8_bytes") else float("nan")
            k.add_row(
                target,
                name,
                f"{v['int8_bytes']:,}",
                f"{v['unpacked_bytes']:,}",
                f"{v['packed_bytes']:,}",
                f"{ratio:.2f}",
            )
    con.print(k)
    a = Table(title="artifact bytes (int8 build)")
    names = sorted({n for e in summary.values() for n in e["artifacts_int8"]})
    a.add_column("artifact")
    for target in summary:
        a.add_column(target, justify="right")
    for n in names:
        a.add_row(n, *[f"{summary[t]['artifacts_int8'].get(n, 0):,}" for t in summary])
    con.print(a)
    if "edgetpu" in summary and "edgetpu" in summary["edgetpu"]:
        m = summary["edgetpu"]["edgetpu"]
        con.print(
            f"Edge TPU: {m['ops_mapped']} ops mapped, {m['ops_cpu']} on CPU; predicted parameter cache "
            f"{m['cache_used_bytes']:,} of {m['cache_bytes']:,} B ({'fits' if m['fits_cache'] else 'spills'}); compiler {m['compiler']}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config", default="default", help="host training preset when no --checkpoint (default, tiny)"
    )
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--seeds", type=Path)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_build")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    con = Console()
    work = args.work / args.config
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or train_base(args.config, work / "base.pt", con)
    seeds = args.seeds
    if seeds is None or not json.loads((seeds / "library.json").read_text()).get("seeds"):
        if seeds is not None:
            con.print(f"{seeds} holds no seeds: growing the bench's own library")
        seeds = make_library(checkpoint, work / "seeds", con)
    from kasmina_edge.core import catalog

    runs: list[dict[str, Any]] = []
    for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
        for bits in (8, 4):
            if bits not in catalog.target(target).bits_allowed:
                continue
            con.rule(f"{target} {bits}-bit")
            runs.append(bench_target(target, bits, checkpoint, seeds, work, con))
    summary = summarize(runs)
    render(summary, con)
    flash = [f for t in {r["target"] for r in runs if r["bits"] == 4} if (f := kernel_flash(work, t)) is not None]
    render_flash(flash, con)
    out = args.json or (work / "bench_build.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"checkpoint": str(checkpoint), "seeds": str(seeds), "summary": summary, "flash": flash, "runs": runs}
    out.write_text(json.dumps(payload, indent=2, default=str))
    con.print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
