"""The frame-guidance table from the kinema eval reports in this directory (TASK-gS.json; g1 = no guidance).

    python benchmarks/results/frame_guidance/summary.py
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
BASE = {"predict": "repeat 13.48 / linear 11.53", "interpolate": "repeat 13.18 / blend 13.89",
        "animate": "repeat 13.34"}

print("| task | frame guidance | PSNR dB (one sample) | digit | frame identity | identity held | FD-digits | flicker |"
      " sampling s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for task in BASE:
    for path in sorted(HERE.glob(f"{task}-g*.json"), key=lambda p: float(p.stem.split("-g")[1])):
        row = json.loads(path.read_text())["results"][0]
        a, f = row["alignment"], row["frame_metrics"]["mean_over_draws"]
        print(f"| {task} ({BASE[task]}) | {path.stem.split('-g')[1]} | {f['psnr']:.2f} | {a['digit_accuracy']:.2f} | "
              f"{a['frame_identity']:.3f} | {a['identity_held']:.2f} | {row['fd_digits']:.2f} | "
              f"{row['temporal']['flicker_index']:.4f} | {row['seconds']['sampling']:.0f} |")
