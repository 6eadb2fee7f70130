"""Served TranAD scoring before and after :class:`~satwatch.detectors.tranad.FastTranADScorer`.

Scripts the served module (``export.torchscript.ServedTranAD``) twice from the same weights:
``old``, scoring with the reference :class:`~satwatch.detectors.tranad.TranADScorer`
(``nn.Transformer*`` layers, ``scaled_dot_product_attention``), and ``new``, the exported
``model.pt`` of today (``FastTranADScorer``). Both are saved and reloaded with
``torch.jit.load`` and called as the PyTorch backend calls them: one intra-op thread, inference
mode, a chunk of steps plus the 9-step context. Calls alternate between the variants (the order
flips every repetition) so that the machine's noise falls on all of them alike; printed are the
median and p90 wall-clock µs per time step, the median CPU time of the calling thread per step
(less disturbed by other processes), the minor page faults per call, and old ÷ new of the
medians. ``--blocks`` adds ``new`` variants scoring that many windows at a time. Not a test:
no timing is asserted.

    .venv/bin/python benchmarks/tranad_speed.py                       # artifacts/tranad/tranad_sat1
    .venv/bin/python benchmarks/tranad_speed.py --random --blocks 32,128,4096

Measured (2 shared CPU cores, load average 4-9, the trained ``tranad_sat1``, 256-step chunks
with context, 200 interleaved repetitions; the command above)::

    variant     median µs/step    p90   CPU µs/step   faults/call
    old                  204.5  254.1         188.1          1437
    new                   56.0   76.9          50.9             0
    old / new = 3.65 (median); another run 158.1 / 51.6 = 3.06; 1000-step chunks 4.11
    max |new - old|: score 8.9e-08, reconstruction 1.2e-07

    --blocks 32,128,256 (same run as the 3.06): 60.7, 50.3 and 77.9 µs/step; 256 windows at
    once page-fault 2,250 pages (9 MB) afresh on every call, 64 and 128 none, 32 adds calls.

Where the old time goes (torch.profiler, one thread, two runs): 65-74 % in
``_scaled_dot_product_flash_attention_for_cpu`` (6 calls per chunk over 256 x 25 heads two
features wide; the two encoder self-attentions alone 46 %), then the q/k/v projections as
``bmm`` in the sequence-first layout nn.MultiheadAttention transposes to (8 %), the copies
splitting q/k/v (5 %), layer norms and feed-forward (6 %). The new one: the broadcast products
of :func:`~satwatch.detectors.tranad._attend` (``mul`` 23 %), the projections (``mm`` 19 %,
near one core's FMA peak), ``exp2`` 6 %, layer norms 6 %, the TorchScript interpreter 6 %.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from satwatch.detectors import tranad
from satwatch.detectors.artifacts import load_trained
from satwatch.export import torchscript

ARTIFACT = Path("artifacts/tranad/tranad_sat1")


def _model(args: argparse.Namespace) -> tuple[tranad.TranAD, float]:
    if not args.random and args.artifact.is_dir():
        model, card = load_trained(args.artifact)
        return model.eval(), float(card.get("threshold", 0.0))
    torch.manual_seed(0)
    return tranad.build_model(tranad.Params()).eval(), 0.0


def _variants(
    model: tranad.TranAD, threshold: float, blocks: list[int], folder: Path
) -> dict[str, torch.jit.ScriptModule]:
    """Each variant scripted, saved and reloaded as the backend loads it."""
    modules = {
        "old": torchscript.ServedTranAD(model, threshold, tranad.TranADScorer(model)),
        "new": torchscript.ServedTranAD(model, threshold),
    }
    for block in blocks:
        scorer = tranad.FastTranADScorer(model, block=block)
        modules[f"new block {block}"] = torchscript.ServedTranAD(model, threshold, scorer)
    loaded = {}
    for index, (name, module) in enumerate(modules.items()):
        path = folder / f"{index}.pt"
        torch.jit.script(module.eval()).save(str(path))
        loaded[name] = torchscript.load_exported(path)
    return loaded


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _measure(
    modules: dict[str, torch.jit.ScriptModule],
    chunk: torch.Tensor,
    context: torch.Tensor,
    reps: int,
) -> dict[str, dict[str, float]]:
    names = list(modules)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    with torch.inference_mode():
        for name in names:  # warm-up: the profiling executor optimises on the first calls
            for _ in range(5):
                modules[name](chunk, context)
        for rep in range(reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                before = _faults()
                started, started_cpu = time.perf_counter(), time.thread_time()
                modules[name](chunk, context)
                seconds[name].append(time.perf_counter() - started)
                cpu[name].append(time.thread_time() - started_cpu)
                faults[name].append(_faults() - before)
    steps = chunk.shape[0]
    return {
        name: {
            "median": float(np.median(seconds[name])) / steps * 1e6,
            "p90": float(np.percentile(seconds[name], 90)) / steps * 1e6,
            "cpu": float(np.median(cpu[name])) / steps * 1e6,
            "faults": float(np.median(faults[name])),
        }
        for name in names
    }


def _differences(
    modules: dict[str, torch.jit.ScriptModule], chunk: torch.Tensor, context: torch.Tensor
) -> dict[str, tuple[float, float]]:
    with torch.inference_mode():
        old = modules["old"](chunk, context)
        got = {name: module(chunk, context) for name, module in modules.items() if name != "old"}
    return {
        name: (float((out[1] - old[1]).abs().max()), float((out[0] - old[0]).abs().max()))
        for name, out in got.items()
    }


def main() -> None:
    """Parse the flags, time the variants, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=ARTIFACT)
    parser.add_argument("--random", action="store_true", help="random weights, no artifact")
    parser.add_argument("--chunk", type=int, default=256, help="time steps per call")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", default="", help="extra new variants, e.g. 32,128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, threshold = _model(args)
    blocks = [int(value) for value in args.blocks.split(",") if value]
    generator = torch.Generator().manual_seed(0)
    chunk = torch.rand(args.chunk, model.n_features, generator=generator) * 1.2 - 0.1
    context = torch.rand(model.window - 1, model.n_features, generator=generator)
    with tempfile.TemporaryDirectory() as folder:
        modules = _variants(model, threshold, blocks, Path(folder))
        figures = _measure(modules, chunk, context, args.reps)
        differences = _differences(modules, chunk, context)
    print(
        f"{args.chunk}-step chunks, {args.reps} interleaved repetitions, {args.threads} thread(s)"
    )
    print(f"{'variant':<16}{'median µs/step':>16}{'p90':>8}{'CPU µs/step':>13}{'faults/call':>13}")
    for name, row in figures.items():
        print(
            f"{name:<16}{row['median']:>16.1f}{row['p90']:>8.1f}{row['cpu']:>13.1f}"
            f"{row['faults']:>13.0f}"
        )
    for name, row in figures.items():
        if name != "old":
            score, recon = differences[name]
            print(
                f"old / {name} = {figures['old']['median'] / row['median']:.2f} (median), "
                f"max |{name} - old|: score {score:.2g}, reconstruction {recon:.2g}"
            )


if __name__ == "__main__":
    main()
