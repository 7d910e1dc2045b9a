"""One table row per `kinema eval` report under a directory: python summary.py DIR [DIR ...] (markdown to stdout)."""

import json
import sys
from pathlib import Path

print("| model | eval | digit | frame identity | identity held | direction | entropy | FD-digits (real-vs-real) "
      "| PSNR (repeat / blend) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for root in sys.argv[1:]:
    for path in sorted(Path(root).glob("*/report.json")):
        r = json.loads(path.read_text())
        res, real = r["results"][0], r["real"]
        a = res["alignment"]
        direction = a.get("direction_accuracy", a.get("direction_agreement_with_real"))
        entropy = a.get("diversity", {}).get("entropy_normalised")
        psnr = ""
        if "frame_metrics" in res:
            b = real["baselines"]
            psnr = (f"{res['frame_metrics']['mean_over_draws']['psnr']:.2f} "
                    f"({b['repeat last known frame']['psnr']:.2f} / {b['linear blending']['psnr']:.2f})")
        fmt = lambda v: "" if v is None else f"{v:.3f}"
        print(f"| {Path(root).name} | {path.parent.name} | {fmt(a.get('digit_accuracy'))} | "
              f"{fmt(a.get('frame_identity'))} | {fmt(a.get('identity_held'))} | {fmt(direction)} | {fmt(entropy)} | "
              f"{res['fd_digits']:.2f} ({r['calibration']['real_vs_real']['fd_digits']:.2f}) | {psnr} |")
