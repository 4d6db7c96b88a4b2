"""Faces left recognizable: streamer vs deface, blur mode, on the same clips and detector settings.

A face "slips through" when a frame shows it un-anonymized, the complaint
users of face blurring tools make most ("the face shows for a frame or
two"). Neither tool can be its own judge, so the faces are found by a
detector independent of CenterFace: dlib's HOG frontal-face detector (from
the ``dlib-bin`` wheel; it finds frontal faces of about 80 px and more, so
small and profile faces are not judged), on every original frame. A face is
counted as covered in an output frame when the sharpness inside its box
(variance of the Laplacian, on the middle 60 % of the box) has dropped below
``--sharpness-ratio`` of the original's: a blurred face keeps a few percent
of it, an untouched one re-encoded most of it (the ratios' quantiles are in
the JSON to check that). Boxes with almost no detail in the original are
left out as undecidable. Both tools run as in ``compare_deface.py``, in
blur mode (a generated face is as sharp as the original: this measure does
not apply to ``--mode gan``). Output frames are matched to the original's
by time since the start of the file (not by count: deface writes a
constant-rate file and fills the time before a clip's first picture with
copies of it, 25 frames in one clip).

Usage:
    python benchmarks/leaked_faces.py                         # clips in ../shared/data/videos
    python benchmarks/leaked_faces.py a.mp4 --json out.json
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np

from benchmarks.compare_deface import commands, comparison_parser, probe, rows_per_clip
from engines.select import describe_machine
from streamer.stages.detector import detector_input_size

#: A box whose original has less detail than this (Laplacian variance) cannot show a blur.
MIN_DETAIL = 20.0


def sharpness(gray: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian over the middle 60 % of ``box`` (x0, y0, x1, y1 in pixels)."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) // 5, (y1 - y0) // 5
    patch = gray[y0 + dy:y1 - dy, x0 + dx:x1 - dx]
    return float(cv2.Laplacian(patch, cv2.CV_64F).var()) if patch.size else 0.0


def _runs(flags: list[bool]) -> list[int]:
    """Lengths of the runs of consecutive True values."""
    runs, n = [], 0
    for flag in flags + [False]:
        if flag:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def file_start(container) -> float:
    """When a file starts, seconds: its first packet's time, whichever stream (a clip whose sound
    starts before its picture starts at the sound); 0 when unknown."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


class _NearestFrame:
    """An output's frames looked up by presentation time: the one nearest to each time asked for
    (times asked in increasing order), grey, at the original's size. Matches frames by time since
    the file's start, not by count: an output may hold frames the original has not (deface fills
    the time before a late first picture with copies of it)."""

    def __init__(self, path: str, size: tuple[int, int]) -> None:
        self.container = av.open(path)
        self.frames = self.container.decode(video=0)
        self.size = size  # (width, height) of the original
        self.current = self.upcoming = None
        self.count = 0
        self._advance()
        self._advance()
        self.start = file_start(self.container)

    def _advance(self) -> None:
        frame = next(self.frames, None)
        self.current, self.upcoming = self.upcoming, frame
        self.count += frame is not None

    def at(self, t: float) -> np.ndarray | None:
        """The grey frame nearest to ``t`` seconds after the start of the file (None when it has none)."""
        while self.upcoming is not None and self.current is not None and \
                abs(self.upcoming.time - self.start - t) <= abs(self.current.time - self.start - t):
            self._advance()
        frame = self.current or self.upcoming
        if frame is None:
            return None
        grey = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
        if (grey.shape[1], grey.shape[0]) != self.size:  # deface pads/scales to multiples of 16
            grey = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)
        return grey

    def close(self) -> int:
        """Close; returns the number of frames the output holds."""
        self.count += sum(1 for _ in self.frames)
        self.container.close()
        return self.count


def judge_clip(original: str, outputs: dict[str, str], ratio: float) -> dict:
    """Per tool: reference faces, faces left sharp, frames with one, and the runs of such frames."""
    import dlib

    hog = dlib.get_frontal_face_detector()
    tally = {name: {"leaked": 0, "ratios": [], "leak_frames": []} for name in outputs}
    faces = undecidable = frames = 0
    with av.open(original) as container:
        size = (container.streams.video[0].width, container.streams.video[0].height)
        shown = {name: _NearestFrame(path, size) for name, path in outputs.items()}
        start = file_start(container)
        for source in container.decode(video=0):
            gray = cv2.cvtColor(source.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)
            outs = {name: follower.at(source.time - start) for name, follower in shown.items()}
            frames += 1
            h, w = gray.shape
            boxes = [(max(0, r.left()), max(0, r.top()), min(w, r.right()), min(h, r.bottom())) for r in hog(gray, 0)]
            leaks = {name: False for name in outputs}
            for box in boxes:
                detail = sharpness(gray, box)
                if detail < MIN_DETAIL:
                    undecidable += 1
                    continue
                faces += 1
                for name, out in outs.items():
                    kept = 1.0 if out is None else sharpness(out, box) / detail
                    tally[name]["ratios"].append(kept)
                    if kept >= ratio:
                        tally[name]["leaked"] += 1
                        leaks[name] = True
            for name in outputs:
                tally[name]["leak_frames"].append(leaks[name])
    counts = {name: follower.close() for name, follower in shown.items()}
    result = {"frames": frames, "faces_judged": faces, "undecidable": undecidable}
    for name, t in tally.items():
        runs = _runs(t["leak_frames"])
        q = np.quantile(t["ratios"], [0.05, 0.5, 0.95]).round(3).tolist() if t["ratios"] else []
        result[name] = {"faces_left_sharp": t["leaked"], "frames_with_one": sum(t["leak_frames"]),
                        "runs": len(runs), "runs_of_1_2_frames": sum(1 for n in runs if n <= 2),
                        "longest_run": max(runs, default=0), "sharpness_ratio_q05_q50_q95": q,
                        "output_frames": counts[name],
                        "first_frames_with_one": [i for i, leak in enumerate(t["leak_frames"]) if leak][:20]}
    return result


def main(argv: list[str] | None = None) -> int:
    """Run both tools on each clip, judge their outputs and print a Markdown table."""
    parser = comparison_parser(__doc__)
    parser.add_argument("--sharpness-ratio", type=float, default=0.35,
                        help="a face keeping this share of its sharpness or more is left recognizable")
    args = parser.parse_args(argv)

    def run_and_judge(clip: str, workdir: Path) -> dict:
        w, h, _, has_audio = probe(clip)
        size = detector_input_size(w, h, args.width)
        outputs = {}
        for name, cmd in zip(("streamer", "deface"), commands(clip, size, args.threshold, has_audio, workdir)):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"{clip}: {name} failed: {proc.stderr[-300:]}")
            outputs[name] = str(workdir / ("ours.mp4" if name == "streamer" else "deface.mp4"))
        return {"clip": Path(clip).name, "size": f"{w}x{h}", "detector_input": f"{size[0]}x{size[1]}",
                **judge_clip(clip, outputs, args.sharpness_ratio)}

    rows = rows_per_clip(args, run_and_judge)
    if rows is None:
        return 2
    meta = {"date": dt.date.today().isoformat(), "machine": describe_machine("cpu"),
            "command": "python " + " ".join(sys.argv), "judge": "dlib HOG frontal faces, upsample 0",
            "sharpness_ratio": args.sharpness_ratio}
    print("| clip | frames | faces judged | left sharp: streamer / deface | frames with one | "
          "runs (of 1-2 frames) | longest run |")
    print("|---|---|---|---|---|---|---|")
    for r in rows + [_total(rows)]:
        print(f"| {r['clip']} | {r['frames']} | {r['faces_judged']} | " + " | ".join(
            " / ".join(_cell(r, name, key) for name in ("streamer", "deface"))
            for key in ("faces_left_sharp", "frames_with_one", "runs", "longest_run")) + " |")
    print(f"\n{meta['date']}, {meta['machine']}: `{meta['command']}`")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


def _cell(row: dict, tool: str, key: str) -> str:
    """One tool's figure for a table cell; ``runs`` with the runs of 1-2 frames in brackets."""
    t = row[tool]
    return f"{t['runs']} ({t['runs_of_1_2_frames']})" if key == "runs" else str(t[key])


def _total(rows: list[dict]) -> dict:
    """The rows summed (longest run: the longest of all)."""
    total = {"clip": "**all clips**", "frames": sum(r["frames"] for r in rows),
             "faces_judged": sum(r["faces_judged"] for r in rows)}
    for name in ("streamer", "deface"):
        total[name] = {key: (max if key == "longest_run" else sum)([0] + [r[name][key] for r in rows])
                       for key in ("faces_left_sharp", "frames_with_one", "runs", "runs_of_1_2_frames",
                                   "longest_run")}
    return total


if __name__ == "__main__":
    sys.exit(main())
