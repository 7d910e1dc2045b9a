"""Speed against the peers: kinema's SpaceTimeUNet, lucidrains' video-diffusion-pytorch Unet3D (0.7.0) and
diffusers' UNet3DConditionModel at matched parameter counts, on two configs, in fp32 and bf16.

    make bench-env                                   # .venv-bench: kinema + the peers (never kinema's own deps)
    .venv-bench/bin/python benchmarks/peers.py       # every model x config x precision, one subprocess each

A = batch 4 x 1 x 16 x 32 x 32, B = batch 2 x 3 x 16 x 64 x 64. Per run: parameters, the train step
(forward + MSE loss + backward + fused AdamW, the same for every model) and the denoiser forward (no
grad), each the median of `--repeat` timings after `--warmup` (with `--rounds` R, every model is measured
R times, the models taking turns, and a row gives the medians over rounds and, as its speed-up, the median
of the per-round ratios: a machine whose speed drifts then hits every model alike); peak RSS of the process, and the peak
bytes of live tensors in one train step (weights and AdamW state included: what the model needs
whatever the allocator keeps);
model FLOPs of one forward and one train step (`kinema.models.kernels.flop_counter`: torch's counter
plus kinema's oneDNN conv route);
MFU = train FLOPs / step time / this machine's measured bf16 matmul peak (the best of 2048³ and 4096³
products, and of the runs merged into one file), or its float32 peak on a
CPU without native bf16 (there bf16 is emulated, far slower than float32: run `--precisions fp32`
and `--name` to keep such a run apart; `--merge` adds rows to an earlier run's file). `kinema-p2` is
kinema's network with `patch_size=2`: 2 x 2 pixel patches folded into channels, the same levels on a
quarter of the positions, so far fewer FLOPs (a gain from doing less work: compare the FLOP columns).
`kinema-compiled`, run only when named in `--models`, is kinema's network under `torch.compile` (inductor;
the warm-up compiles, so keep `--warmup` >= 1; its peak RSS includes the compiler's). `kinema-ckpt`
(also on request) trains with activation checkpointing (`train.gradient_checkpointing`; its train FLOPs
include the recomputed forward); `kinema-rc` (on request) recomputes only the cheap parts
(`train.recompute_activations`: norm-SiLU-FiLM and temporal attention; FLOPs likewise). Widths are chosen so each peer's parameter count is the nearest to
lucidrains' Unet3D at the reference width. `--malloc keep` runs every model's
process with freed memory kept for reuse (`kinema.runtime`; the `kinema` command's default), so no
step pays the kernel to fault in pages; use a separate `--name`. Writes benchmarks/results/<name>.{json,md}
(default peers).

Both peers import torchvision at module level; the registry's torchvision build cannot load beside this
torch (`operator torchvision::nms does not exist`; 0.29.1 also looks up `qnms`), so the benchmark declares
those operators before importing them. Nothing of this reaches kinema itself.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from kinema.config import resolve_precision
from kinema.models.kernels import flop_counter
from kinema.runtime import keep_freed_memory

RESULTS = Path(__file__).parent / "results"
CONFIGS = {"A": (4, 1, 16, 32, 32), "B": (2, 3, 16, 64, 64)}  # (B, C, T, H, W)
MODELS = ("kinema", "kinema-compiled", "kinema-ckpt", "kinema-rc", "kinema-p2", "vdp", "diffusers")  # see the module docstring
VDP_DIM = 64  # lucidrains' Unet3D(dim=64, dim_mults=(1, 2, 4, 8)), its README's size: the reference


_TORCHVISION_LIB = []  # the Library must outlive the call: dropping it removes the definition


def declare_torchvision_ops() -> None:
    """Declare torchvision::nms / qnms so the registry's torchvision imports beside this torch (benchmark only)."""
    if _TORCHVISION_LIB:
        return
    try:
        lib = torch.library.Library("torchvision", "DEF")
        for name in ("nms", "qnms"):  # the operators torchvision's meta registrations look up at import
            lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_LIB.append(lib)
    except RuntimeError:  # already defined (a working torchvision): nothing to do
        pass

# ---- the models, by width ----


def build(name: str, width: int, channels: int, size: int):
    """(model, forward(x, t) -> output) for a model family at a width."""
    if name.startswith("kinema"):
        from kinema.config import UNetConfig
        from kinema.models import SpaceTimeUNet

        cfg = UNetConfig(in_channels=channels, channels=width, channel_mult=(1, 2, 4, 8), num_res_blocks=1,
                         spatial_attention_levels=(2, 3), head_dim=16, norm_groups=8,
                         patch_size=2 if name == "kinema-p2" else 1)
        model = SpaceTimeUNet(cfg)
        model.gradient_checkpointing = name == "kinema-ckpt"
        model.recompute_activations = name == "kinema-rc"
        return model, lambda x, t: model(x, t)
    if name == "vdp":
        declare_torchvision_ops()
        from video_diffusion_pytorch import Unet3D

        model = Unet3D(dim=width, dim_mults=(1, 2, 4, 8), channels=channels)
        return model, lambda x, t: model(x, t)
    if name == "diffusers":
        declare_torchvision_ops()
        from diffusers import UNet3DConditionModel

        model = UNet3DConditionModel(
            sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
            block_out_channels=(width, 2 * width, 4 * width, 4 * width), norm_num_groups=8,
            cross_attention_dim=64, attention_head_dim=8)
        context = torch.zeros(1, 1, 64)

        def forward(x, t):
            return model(x, t, encoder_hidden_states=context.expand(x.shape[0], 1, 64)).sample

        return model, forward
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_width(name: str, channels: int, size: int, target: int) -> int:
    """The width (multiple of 16) whose parameter count is nearest to `target`."""
    best = None
    for width in range(16, 257, 16):
        n = count(build(name, width, channels, size)[0])
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (width, n)
        if n > 2 * target:
            break
    return best[0]

# ---- one measurement (runs in its own process for a clean peak RSS) ----


class TensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the mode and still alive (allocator-independent).

    Peak RSS also counts what the allocator keeps after tensors are freed (glibc's heap caches freed
    blocks and fragments), so it depends on the allocator as much as on the model; this does not.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}  # storage data pointer -> bytes
        self.now = self.peak = 0

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:  # a view of a tracked storage adds nothing
                    self.live[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._free, key)
        return out


def tensor_bytes(*tensors: torch.Tensor) -> int:
    """Bytes of the distinct storages behind some tensors."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def measure(name: str, config: str, precision: str, width: int, warmup: int, repeat: int) -> dict:
    """Time one model on one config in one precision."""
    b, c, t, h, w = CONFIGS[config]
    torch.manual_seed(0)
    model, forward = build(name, width, c, h)
    x, noise = torch.randn(b, c, t, h, w), torch.randn(b, c, t, h, w)
    steps = torch.randint(0, 1000, (b,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # every model: what kinema's Trainer uses
    bf16 = precision == "bf16"

    def train_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x, steps)
            loss = F.mse_loss(out.float(), noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def denoise():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            forward(x, steps)

    with flop_counter() as fc:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.mse_loss(forward(x, steps).float(), noise)
        loss.backward()
    flops_train = fc.get_total_flops()
    opt.zero_grad(set_to_none=True)
    with flop_counter() as fc:
        denoise()
    flops_fwd = fc.get_total_flops()
    if name.endswith("-compiled"):  # FLOPs counted eagerly (the same math); the warm-up includes compiling
        forward = torch.compile(forward)
    timings = {}
    for label, fn in (("train_step_s", train_step), ("forward_s", denoise)):
        for _ in range(warmup):
            fn()
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        timings[label] = statistics.median(runs)
    state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    held = tensor_bytes(*model.parameters(), *state, x, noise, steps)  # alive before the step: weights, AdamW state
    with TensorBytes() as tb:
        train_step()
    return {"model": name, "config": config, "precision": precision, "width": width, "params": count(model),
            "flops_train": flops_train, "flops_forward": flops_fwd, **timings,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_tensor_mb": (held + tb.peak) / 2**20,
            "threads": torch.get_num_threads()}


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (2048, 4096), repeat: int = 5) -> float:
    """This machine's matmul throughput in `dtype`, FLOP/s: the best size's median of `repeat` n x n x n products.

    Two warm-up products per size first; the best size, so MFU is never taken against a low reading.
    """
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(2):
            a @ b
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            a @ b
            runs.append(time.perf_counter() - start)
        best = max(best, 2 * n ** 3 / statistics.median(runs))
    return best

# ---- the driver ----


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_request = ("kinema-compiled", "kinema-ckpt", "kinema-rc")
    p.add_argument("--models", nargs="+", default=[m for m in MODELS if m not in on_request], choices=MODELS)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--name", default="peers", help="results file stem")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows already in <name>.json, replacing those measured again")
    p.add_argument("--malloc", default="system", choices=["system", "keep"],
                   help="keep: every model's process runs with kinema.runtime.keep_freed_memory() (what the "
                        "kinema command does): freed memory reused, no page faults per step; system: glibc's default")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every model this many times, one round after another (the models interleaved, so "
                        "the machine's drift hits each); a row reports the medians over rounds, and its speed-up the "
                        "median of the per-round ratios")
    p.add_argument("--one", nargs=4, metavar=("MODEL", "CONFIG", "PRECISION", "WIDTH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        name, config, precision, width = args.one
        if args.malloc == "keep" and not keep_freed_memory():
            raise SystemExit("--malloc keep needs glibc (Linux)")
        print(json.dumps(measure(name, config, precision, int(width), args.warmup, args.repeat)))
        return
    peak_dtype = "bf16" if resolve_precision("auto", "cpu") == "bf16" else "fp32"
    peak = matmul_peak(torch.bfloat16 if peak_dtype == "bf16" else torch.float32)
    print(f"{peak_dtype} matmul peak: {peak / 1e12:.2f} TFLOP/s", flush=True)
    rows = []
    if args.merge and (RESULTS / f"{args.name}.json").exists():
        earlier = json.loads((RESULTS / f"{args.name}.json").read_text())
        rows = earlier["rows"]
        peak = max(peak, 1e12 * earlier.get(f"{peak_dtype}_matmul_peak_tflops", 0.0))  # the best this machine showed
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    widths = {}
    for config in args.configs:
        _, c, _, h, _ = CONFIGS[config]
        target = count(build("vdp", VDP_DIM, c, h)[0])
        widths[config] = {name: VDP_DIM if name == "vdp" else matched_width(name, c, h, target) for name in args.models}
    measured: dict[tuple, list[dict]] = {}  # (model, config, precision) -> one row per round
    for _ in range(args.rounds):
        for config in args.configs:
            for name in args.models:
                for precision in args.precisions:
                    cmd = [sys.executable, __file__, "--one", name, config, precision, str(widths[config][name]),
                           "--warmup", str(args.warmup), "--repeat", str(args.repeat), "--malloc", args.malloc]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode:
                        print(done.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(f"{name} {config} {precision} failed")
                    row = json.loads(done.stdout.strip().splitlines()[-1]) | {"malloc": args.malloc}
                    print(json.dumps(row), flush=True)
                    key = (name, config, precision)
                    measured.setdefault(key, []).append(row)
                    rows = [r for r in rows if (r["model"], r["config"], r["precision"]) != key]
                    rows.append(over_rounds(measured[key]))
                    lines = write_report(rows, peak, peak_dtype, args.name)  # after every row: a stopped run keeps them
    print("\n".join(lines))


def over_rounds(runs: list[dict]) -> dict:
    """One row from a model's rounds: median times and peaks, each round's times kept for paired ratios."""
    row = dict(runs[-1])
    for key in ("train_step_s", "forward_s", "peak_rss_mb", "peak_tensor_mb"):
        row[key] = statistics.median(r[key] for r in runs)
    row["rounds_train_step_s"] = [r["train_step_s"] for r in runs]
    row["train_tflops"] = row["flops_train"] / row["train_step_s"] / 1e12
    return row


def write_report(rows: list[dict], peak: float, peak_dtype: str, name: str) -> list[str]:
    """benchmarks/results/<name>.json and a markdown table with speed-ups against lucidrains' fp32."""
    RESULTS.mkdir(exist_ok=True)
    order = {m: i for i, m in enumerate(MODELS)}
    rows = sorted(rows, key=lambda r: (r["config"], order[r["model"]], r["precision"] != "fp32"))
    for r in rows:  # merged rows from an earlier run: MFU against this run's peak
        r["mfu"] = r["flops_train"] / r["train_step_s"] / peak
    report = {f"{peak_dtype}_matmul_peak_tflops": peak / 1e12, "mfu_against": peak_dtype, "configs": CONFIGS,
              "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Speed against the peers", "",
             f"Measured {peak_dtype} matmul peak (MFU is against it): {peak / 1e12:.2f} TFLOP/s; "
             f"{rows[0]['threads']} threads. Medians after warm-up. malloc: "
             f"{', '.join(sorted({r.get('malloc', 'system') for r in rows}))}.",
             "", "| config | model | precision | params (M) | train step (s) | train GFLOP | "
             "TFLOP/s | MFU | forward (s) | forward GFLOP | peak RSS (MB) | peak tensors (MB) | speed-up vs VDP fp32 |",
             "| --- " * 13 + "|"]
    for r in rows:
        base = next((q for q in rows if q["config"] == r["config"] and q["model"] == "vdp"
                     and q["precision"] == "fp32"), None)
        speedup = ""
        if base:
            ours, theirs = r.get("rounds_train_step_s", []), base.get("rounds_train_step_s", [])
            paired = len(ours) == len(theirs) > 1  # measured in the same rounds: the median of per-round ratios
            ratio = (statistics.median(b / o for b, o in zip(theirs, ours)) if paired
                     else base["train_step_s"] / r["train_step_s"])
            speedup = f"{ratio:.1f}×"
        tensors = f"{r['peak_tensor_mb']:.0f}" if "peak_tensor_mb" in r else ""  # rows from before the column
        lines.append(f"| {r['config']} | {r['model']} | {r['precision']} | {r['params'] / 1e6:.1f} | "
                     f"{r['train_step_s']:.2f} | {r['flops_train'] / 1e9:.0f} | {r['train_tflops']:.3f} | "
                     f"{100 * r['mfu']:.1f} % | {r['forward_s']:.2f} | {r['flops_forward'] / 1e9:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {tensors} | {speedup} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
