"""The evaluation report on disk: report.json (every figure and choice), report.md and png plots.

    write_report(report, "report/", real_video, clips)   # clips: {steps: (draws, N, C, T, H, W)}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..data import to_uint8

# ---- helpers ----


def _plt():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(x, digits: int = 3) -> str:
    """A figure for a table: rounded floats, 'n/a' for missing or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _kid(kid: dict | None) -> str:
    """KID as "mean ± std over subsets", or the mean alone when the one subset is every clip."""
    if not kid:
        return "n/a"
    if kid["std"] > 0:
        return f"{kid['mean']:.5f} ± {kid['std']:.5f}"
    return f"{kid['mean']:.5f} (one subset: all {kid['subset_size']} clips)"


def _jsonable(x):
    """NaN and infinities as null, so report.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ---- plots ----


def plot_metric_vs_steps(results: list[dict], path: Path, floor: float | None = None) -> bool:
    """FD-digits / FVD / PSNR against sampler steps, one panel each; False (nothing written) with one step count.

    `floor`: FD-digits of real clips against another real draw, drawn as a dashed line.
    """
    if len(results) < 2:
        return False
    series = {"FD-digits (lower is better)": [r.get("fd_digits") for r in results],
              "FVD (lower is better)": [r.get("fvd") for r in results],
              "PSNR of generated frames, dB": [r.get("frame_metrics", {}).get("mean_over_draws", {}).get("psnr")
                                               for r in results]}
    series = {k: v for k, v in series.items() if all(isinstance(x, float) for x in v)}
    if not series:
        return False
    plt = _plt()
    steps = [r["steps"] for r in results]
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        ax.plot(steps, values, marker="o")
        if floor is not None and name.startswith("FD-digits"):
            ax.axhline(floor, ls="--", color="0.5", label="real vs real")
            ax.legend(fontsize=7)
        ax.set(xlabel="sampler steps", title=name, xscale="log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_per_frame(results: list[dict], given: list[int], path: Path) -> bool:
    """Per-frame PSNR and SSIM curves, mean over draws (and best of draws when several); given frames shaded."""
    rows = [r for r in results if "frame_metrics" in r]
    if not rows:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, ("psnr", "ssim")):
        for t in given:
            ax.axvspan(t - 0.5, t + 0.5, color="0.85", lw=0)
        for r in rows:
            fm = r["frame_metrics"]
            hide = lambda values: [float("nan") if t in given else v for t, v in enumerate(values)]  # exact copies
            line, = ax.plot(hide(fm["mean_over_draws"][f"{metric}_per_frame"]), marker=".",
                            label=f"{r['steps']} steps, mean over {fm['draws']}")
            if "best_of_draws" in fm:
                ax.plot(hide(fm["best_of_draws"][f"{metric}_per_frame"]), ls="--", color=line.get_color(),
                        label=f"{r['steps']} steps, best of {fm['draws']}")
            if "average_of_draws" in fm:
                ax.plot(hide(fm["average_of_draws"][f"{metric}_per_frame"]), ls=":", color=line.get_color(),
                        label=f"{r['steps']} steps, average of {fm['draws']}")
        ax.set(xlabel="frame (grey: given)", title="PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_samples(real: torch.Tensor, fake: torch.Tensor, path: Path, clips: int = 4, paired: bool = True) -> None:
    """Frames of the first `clips` real clips (N, C, T, H, W), each above the generated clip made for it (`paired`)
    or above an unrelated sample (unconditional generation)."""
    plt = _plt()
    n, t = min(clips, len(real), len(fake)), real.shape[2]
    name = "generated" if paired else "sample"
    pairs = [p for i in range(n) for p in ((to_uint8(real[i]), f"real {i}"), (to_uint8(fake[i]), f"{name} {i}"))]
    fig, axes = plt.subplots(len(pairs), t, figsize=(0.7 * t, 0.75 * len(pairs)), squeeze=False)
    for row, (frames, label) in zip(axes, pairs):  # frames: uint8 (T, H, W, C)
        for t_i, ax in enumerate(row):
            img = frames[t_i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.04, hspace=0.08, left=0.1, right=0.99, top=0.99, bottom=0.01)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- markdown ----


def _calibration_md(cal: dict) -> list[str]:
    lines = ["## Calibration of FD-digits / KID-digits", "",
             "Real clips against another real draw (the floor at this clip count), against that draw with its "
             "frames shuffled in time, and against uniform noise.", "",
             "| pair | FD-digits | KID-digits |", "| --- | --- | --- |"]
    lines += [f"| {name.replace('_', ' ')} | {_fmt(s['fd_digits'])} | {_fmt(s['kid_digits']['mean'], 5)} |"
              for name, s in cal.items()]
    return lines + [""]


def _results_md(report: dict) -> list[str]:
    rows = report["results"]
    lines = ["## Distribution scores", "",
             "| steps | FD-digits | KID-digits (mean ± std) | FVD | sampling s | scoring s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        kid_text = _kid(r.get("kid_digits"))
        fvd = _fmt(r["fvd"], 2) if isinstance(r.get("fvd"), float) else "unavailable"
        lines.append(f"| {r['steps']} | {_fmt(r.get('fd_digits'))} | {kid_text} | {fvd} | "
                     f"{r['seconds']['sampling']} | {r['seconds']['scoring']} |")
    lines.append("")
    if any("frame_metrics" in r for r in rows):
        lines += ["## Frame metrics (generated frames only)", "",
                  "| steps | draws | PSNR mean over draws | SSIM mean over draws | PSNR best of draws | "
                  "SSIM best of draws | PSNR of the draws' average | SSIM of the draws' average |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            fm = r["frame_metrics"]
            best, average = fm.get("best_of_draws", {}), fm.get("average_of_draws", {})
            lines.append(f"| {r['steps']} | {fm['draws']} | {_fmt(fm['mean_over_draws']['psnr'], 2)} | "
                         f"{_fmt(fm['mean_over_draws']['ssim'])} | {_fmt(best.get('psnr'), 2)} | "
                         f"{_fmt(best.get('ssim'))} | {_fmt(average.get('psnr'), 2)} | {_fmt(average.get('ssim'))} |")
        for name, b in report["real"].get("baselines", {}).items():  # the same targets, no model
            lines.append(f"| {name} | — | {_fmt(b['psnr'], 2)} | {_fmt(b['ssim'])} | | | | |")
        if any("lpips" in r["frame_metrics"]["mean_over_draws"] for r in rows):
            lines += ["", "| steps | LPIPS mean over draws | LPIPS best of draws |", "| --- | --- | --- |"]
            lines += [f"| {r['steps']} | {_fmt(r['frame_metrics']['mean_over_draws']['lpips'])} | "
                      f"{_fmt(r['frame_metrics'].get('best_of_draws', {}).get('lpips'))} |" for r in rows]
        lines += ["", "Best of draws: per clip, the draw with the best score of that metric (an oracle "
                  "choice; it needs the target). Mean over draws: every draw counts. Draws' average: the "
                  "pixel-wise mean of a clip's draws (an estimate of the posterior mean, the least-squares "
                  "prediction; blurred where the draws disagree), scored as one clip.", ""]
    if any("alignment" in r for r in rows):
        lines += ["## Alignment (moving digits)", "", "| steps | measure | value |", "| --- | --- | --- |"]
        for r in rows:
            for name, value in r["alignment"].items():
                if name == "diversity":
                    lines.append(f"| {r['steps']} | digit-class entropy (of log2 10) | "
                                 f"{_fmt(value['entropy_normalised'])} |")
                    lines.append(f"| {r['steps']} | digit-class histogram | {value['histogram']} |")
                else:
                    lines.append(f"| {r['steps']} | {name.replace('_', ' ')} | {_fmt(value)} |")
        if any("frame_digits" in r for r in rows):
            lines += ["", "Each clip's digit frame by frame (-1: no digit seen): `frame_digits` in report.json."]
        real_div = report.get("real", {}).get("diversity")
        if real_div:
            lines += ["", f"Real clips: digit-class entropy {_fmt(real_div['entropy_normalised'])} of log2 10, "
                          f"histogram {real_div['histogram']}."]
        real_path = report.get("real", {}).get("trajectory")
        if real_path:
            lines += ["", f"Real clips against their own tracks (the tracker's floor): "
                          f"{_fmt(real_path['trajectory_error_px'], 2)} px mean, "
                          f"{_fmt(real_path['trajectory_error_px_median'], 2)} px median."]
        lines.append("")
    temporal = [r["temporal"] for r in rows]
    if temporal and temporal[0].get("available"):
        lines += ["## Temporal", "", "| steps | flicker index | warping error |", "| --- | --- | --- |"]
        small = lambda x: "n/a" if x is None else f"{x:.3g}"
        lines += [f"| {r['steps']} | {small(r['temporal']['flicker_index'])} | "
                  f"{small(r['temporal'].get('warping_error'))} |" for r in rows]
        real_t = report["real"]["temporal"]
        lines += [f"| real | {small(real_t['flicker_index'])} | {small(real_t.get('warping_error'))} |", ""]
    elif temporal:
        lines += ["## Temporal", "", f"Unavailable: {temporal[0]['reason']}.", ""]
    return lines


def markdown(report: dict, images: list[str]) -> str:
    """The report as markdown: protocol, feature networks, calibration, scores and the plots."""
    p, nets = report["protocol"], report["feature_networks"]
    frames = p["frames"]
    lines = [f"# Evaluation of {p['model']}", "",
             f"Task **{p['task']}** on {p['num_clips']} real clips ({p['data']['kind']}, "
             f"{frames['size']}x{frames['size']}, {frames['per_clip']} frames; data seed {p['data'].get('seed')}). "
             f"Sampler {p['sampler']}, steps {p['steps']}, spacing {p['spacing'] or 'default'}"
             + (f", the full network every {p['cache_interval']} steps (feature caching)"
                if p.get("cache_interval", 1) > 1 else "") + ", guidance "
             f"{p['guidance']} on {p['conditions'] or 'no conditions'}, seed {p['seed']}, batch {p['batch_size']}, "
             f"{p['draws']} draw(s) per clip.", "",
             f"Given frames: {frames['given'] or 'none'}"
             + (" (frame 0 also as the reference image)" if p.get("frame_reference") and frames["given"] else "")
             + (f", guided at scale {p['frame_guidance']}" if p.get("frame_guidance", 1) != 1 else "") + ". "
             + (f"Frame metrics count the generated frames {frames['generated']}; " if frames["given"] else
                "No frame metrics (no target to compare with); ")
             + f"distribution metrics count frames {frames['distribution_metrics_count']} ({p['count_frames']}).",
             "", "## Feature networks", ""]
    for key, label in (("fd_digits", "FD-digits / KID-digits"), ("fvd", "FVD")):
        net = nets[key]
        lines.append(f"- {label}: {net['name']}, {net['features']}, weights sha256 `{net['sha256']}`"
                     if net["available"] else f"- {label}: unavailable ({net['reason']})")
    lines.append("")
    if report.get("calibration"):
        lines += _calibration_md(report["calibration"])
    lines += _results_md(report)
    lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


# ---- the report directory ----


def write_report(report: dict, out: str | Path, real: torch.Tensor, clips: dict) -> list[Path]:
    """Write report.json, report.md and the plots into `out`; return the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    floor = report.get("calibration", {}).get("real_vs_real", {}).get("fd_digits")
    if plot_metric_vs_steps(report["results"], out / "metric_vs_steps.png", floor):
        images.append("metric_vs_steps.png")
    if plot_per_frame(report["results"], report["protocol"]["frames"]["given"], out / "per_frame.png"):
        images.append("per_frame.png")
    last = max(clips)
    p = report["protocol"]
    plot_samples(real, clips[last][0], out / "samples.png", paired=p["task"] != "generate" or bool(p["conditions"]))
    images.append("samples.png")
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(markdown(report, images))
    return [out / "report.json", out / "report.md"] + [out / name for name in images]
