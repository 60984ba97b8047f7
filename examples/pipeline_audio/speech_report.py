"""A pipeline over a real WAV file: chunk, resample, gain, detect speech, write a report.

It writes a 4-second, 48 kHz test recording (two voiced bursts in faint
noise), runs ``manifest.json`` twice, once with every node in this process
and once as written (the resampler and the detector in processes of their
own), checks that both runs find the same segments where the bursts are,
and writes the report as JSON. Run it: ``python examples/pipeline_audio/speech_report.py``.
With ``--keep DIR`` it leaves ``speech.wav`` and ``report.json`` in ``DIR``, for the same
run from the command line:
``actorstage run-pipeline examples/pipeline_audio/manifest.json --input DIR/speech.wav``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import tempfile
import time
from array import array
from pathlib import Path

import msgspec

from actorstage import run
from actorstage.pipelines import Audio, Pipeline, load_manifest, read_wav, write_wav

HERE = Path(__file__).parent
RATE = 48_000
BURSTS = [(0.50, 1.30), (2.00, 3.10)]  # seconds where the "voice" is


def make_recording(path: Path) -> None:
    """Faint noise (-66 dBFS) with two voiced bursts: harmonics of 180 Hz, -14 dBFS."""
    noise = random.Random(7)
    samples = array("h")
    for index in range(4 * RATE):
        t = index / RATE
        value = noise.gauss(0, 0.0005)
        if any(start <= t < end for start, end in BURSTS):
            value += 0.2 * sum(math.sin(2 * math.pi * 180 * k * t) / k for k in (1, 2, 3))
        samples.append(max(-32768, min(32767, round(value * 32767))))
    write_wav(path, Audio(samples.tobytes(), RATE))


async def report(pipeline: Pipeline, audio: Audio) -> tuple[list[dict[str, float]], float]:
    started = time.perf_counter()
    result = await pipeline.run([audio])
    [output] = result.outputs  # the collector hands over one list at the end
    segments = [msgspec.to_builtins(segment) for segment in output.item]
    took = time.perf_counter() - started
    print(f"  {len(result.nodes)} nodes in {took:.2f}s:")
    for stats in result.nodes.values():
        where = f"pid {stats.pid}" if stats.pid else "this process"
        print(f"    {stats.node_id:<9} {stats.executor:<7} {where:<12} "
              f"in {stats.items_in:>4}  out {stats.items_out:>4}  "
              f"mean {1000 * stats.mean_seconds:.3f} ms")
    return segments, took


async def main(keep: str | None = None) -> int:
    manifest = load_manifest(HERE / "manifest.json")
    native = msgspec.structs.replace(manifest, nodes=[
        msgspec.structs.replace(node, executor="native") for node in manifest.nodes])
    with tempfile.TemporaryDirectory() as temporary:
        folder = keep or temporary
        wav = Path(folder) / "speech.wav"
        make_recording(wav)
        audio = read_wav(wav)
        print(f"recording: {wav.name}, {len(audio.pcm) / 2 / audio.sample_rate:.1f}s "
              f"at {audio.sample_rate} Hz")
        print("all nodes in this process:")
        in_process, _ = await report(Pipeline(native), audio)
        print("resampler and detector in processes of their own:")
        spread, _ = await report(Pipeline(manifest), audio)
        report_path = Path(folder) / "report.json"
        report_path.write_text(json.dumps({"file": wav.name, "segments": spread}, indent=2))
        print(f"report ({report_path.name}):")
        for segment in spread:
            print(f"  speech {segment['start']:.2f}s - {segment['end']:.2f}s, "
                  f"peak {segment['peak_db']:.1f} dBFS")
    if in_process != spread:
        print("the two runs disagree", file=sys.stderr)
        return 1
    found = [(segment["start"], segment["end"]) for segment in spread]
    if len(found) != len(BURSTS) or any(
        abs(start - s) > 0.03 or abs(end - e) > 0.03
        for (start, end), (s, e) in zip(found, BURSTS, strict=True)
    ):
        print(f"expected segments near {BURSTS}, found {found}", file=sys.stderr)
        return 1
    print("both runs found the two bursts")
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", metavar="DIR",
                        help="leave speech.wav and report.json in DIR (default: nowhere)")
    keep = parser.parse_args().keep
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    sys.exit(run(main, keep))
