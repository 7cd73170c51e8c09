"""Does bf16 autocast pay on this CPU? fp32 vs bf16-autocast timings of the default model.

Why it exists: on an AVX2-only CPU (no AVX512-BF16/AMX) bf16 autocast is emulated and
about 20x slower than fp32, which is why ``scaleot.models.device.bf16_is_fast`` turns bf16
requests into fp32 there. ``SCALEOT_CPU_BF16=1`` forces bf16 (this script sets it so that
both precisions really run).

Usage::

    python -m bench.bf16_cpu --repeats 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    from scaleot.models.loading import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    os.environ["SCALEOT_CPU_BF16"] = "1"
    import torch

    from scaleot.models import load_model

    model, _ = load_model(args.model)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    train = torch.randint(0, 1000, (4, 128))
    score = torch.randint(0, 1000, (32, 160))
    for bf16 in (False, True):
        fb, fw = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=train, labels=train).loss
            loss.backward()
            model.zero_grad()
            fb.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(input_ids=score)
            fw.append(time.perf_counter() - t0)
        print(f"{'bf16 autocast' if bf16 else 'fp32':14s} forward+backward 4x128: {statistics.median(fb):6.2f} s   "
              f"forward 32x160: {statistics.median(fw):6.2f} s", flush=True)


if __name__ == "__main__":
    main()
