"""Peak memory of `kinema` commands fed inputs far larger than the model: each bounded by what the task needs.

    python benchmarks/input_memory.py [--out benchmarks/results/input_memory] [--num 1000]

Writes a 1080p, 600-frame mp4 and a 12,500 x 12,500 PNG, then runs each command in its own process under
`/usr/bin/time -v` and reads its peak resident set size:
- `kinema predict` from the 1080p video (only the last --context frames are decoded, at the model's size);
- `kinema animate` from the 12,500^2 PNG (refused before decoding: above kinema's 64-megapixel cap);
- `kinema sample --num 8` against `--num N` (N clips stream to disk in batches of 8: the same peak).
Targets (issue 32): predict <= 1 GB; animate refused or <= 1 GB; --num N within 10 % of one batch.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from kinema.runtime import cpu_bf16_flags


def write_1080p(path: Path, frames: int = 600) -> None:
    """A 1920 x 1080, 25 fps H.264 clip of a square crossing a grey field (small on disk, 3.7 GB decoded)."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25), options={"preset": "ultrafast", "crf": "30"})
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        base = np.full((1080, 1920, 3), 96, dtype=np.uint8)
        for i in range(frames):
            image = base.copy()
            x = (i * 3) % 1700
            image[400:600, x : x + 200] = 230
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def peak_rss(argv: list[str]) -> tuple[int, float, int, str]:
    """Run `kinema argv` under /usr/bin/time -v: (exit code, peak RSS in MB, seconds, last stderr line)."""
    start = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "kinema.cli", *argv], capture_output=True,
                         text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    assert found, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("kinema")]
    return run.returncode, int(found.group(1)) / 1024, seconds, (lines[-1] if lines else "")


def main() -> None:
    """Write the inputs, run the commands, write <out>.json and <out>.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/input_memory", help="output path without suffix")
    parser.add_argument("--num", type=int, default=1000, help="clips of the streaming run (default 1000)")
    parser.add_argument("--model", default="moving-digits", help="model to sample (default the bundled one)")
    args = parser.parse_args()
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        video, image = root / "1080p-600.mp4", root / "huge.png"
        write_1080p(video)
        Image.new("L", (12_500, 12_500)).save(image)
        sizes = {"video_kb": video.stat().st_size // 1024, "png_kb": image.stat().st_size // 1024}
        cases = [
            ("predict from a 1080p, 600-frame mp4", ["predict", "--model", args.model, "--video", str(video),
                                                     "--context", "4", "--steps", "2", "--out",
                                                     str(root / "p.mp4")], 1024),
            ("animate from a 12,500^2 PNG", ["animate", "--model", args.model, "--image", str(image), "--steps", "2",
                                            "--out", str(root / "a.mp4")], 1024),
            ("sample --num 8 (one batch)", ["sample", "--model", args.model, "--num", "8", "--steps", "2",
                                            "--sampler", "dpmpp_2m", "--out", str(root / "s8")], None),
            (f"sample --num {args.num} (streamed, batches of 8)",
             ["sample", "--model", args.model, "--num", str(args.num), "--steps", "2", "--sampler", "dpmpp_2m",
              "--out", str(root / "sN")], None),
        ]
        for what, argv, limit_mb in cases:
            code, mb, seconds, line = peak_rss(argv)
            rows.append({"case": what, "exit": code, "peak_rss_mb": round(mb), "seconds": round(seconds, 1),
                         "limit_mb": limit_mb, "message": line.replace(tmp, "$TMP")})
            print(f"{what}: exit {code}, peak {mb:.0f} MB, {seconds:.1f} s; {line.replace(tmp, '$TMP')}", flush=True)
        written = len(list((root / "sN").glob("sample_*.mp4")))
    one, many = rows[2]["peak_rss_mb"], rows[3]["peak_rss_mb"]
    summary = {**sizes, "streamed_clips_written": written, "streamed_over_one_batch": round(many / one, 3),
               "cpu_flags": cpu_bf16_flags()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    table = ["| case | exit | peak RSS (MB) | limit (MB) | s | message |", "| --- | --- | --- | --- | --- | --- |"]
    table += [f"| {r['case']} | {r['exit']} | {r['peak_rss_mb']} | {r['limit_mb'] or '-'} | {r['seconds']} | "
              f"`{r['message'].replace('|', '/')}` |" for r in rows]
    md = (f"# Peak memory of oversized inputs\n\n`python benchmarks/input_memory.py --num {args.num}` "
          f"(CPU flags: {summary['cpu_flags'] or 'none'}): the 1080p mp4 is {sizes['video_kb']} kB on disk, the "
          f"PNG {sizes['png_kb']} kB. `--num {args.num}` wrote {written} clips at {summary['streamed_over_one_batch']}"
          f" x the peak of one batch.\n\n" + "\n".join(table) + "\n")
    out.with_suffix(".md").write_text(md)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
