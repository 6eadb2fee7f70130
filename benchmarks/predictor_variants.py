"""Which next-value predictor to serve: its training settings, measured beside the others.

Each variant trains :mod:`satwatch.detectors.predictor` on every channel's normalised
training split with the settings told (the rest the quick profile's), and scores the training
split (the calibration the build fits floors on) and the test split as served. Its error is
judged through the served postprocessing function with the repository's settings, alone and
fused with the other three served detectors (OmniAnomaly, TranAD and the nearest window,
scored from a built repository's exported files). Beside the event figures it prints the
predictor's mean squared error on the normal test steps, a label-light check that the network
itself predicts better, and the training time per channel.

Chosen on the validation channels (the 27 SMAP channels outside the seed), never on the
reported ones. The results are in the README ("Where it stands").

Usage::

    python benchmarks/predictor_variants.py --artifacts runs/study/artifacts \\
        --repository runs/study/repository --cache runs/predictor_variants -j 2 \\
        --variants "quick;h10=horizon=10;kc=known_commands=1"
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from nearest_variants import fused_row, row_text, served_scores, study_parser

from satwatch.data import load_dataset
from satwatch.detectors import predictor, registry
from satwatch.detectors.normalization import Normalisation
from satwatch.repository.stages import served_postprocessing

OTHERS = ("omni", "tranad", "nearest")


def parse_variant(text: str) -> tuple[str, dict]:
    """``name=key=value,key=value`` (or ``quick``) -> ``(name, {key: value})``."""
    name, _, settings = text.partition("=")
    types = {f.name: f.type for f in fields(predictor.Params)}
    out: dict = {}
    for pair in filter(None, settings.split(",")):
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"variant {name}: unknown predictor setting {key!r}")
        kind = {"float": float, "bool": lambda text: bool(int(text))}.get(types[key], int)
        out[key] = kind(value)
    return name, out


def _train_one(data: Path | None, name: str, settings: dict, out: Path) -> tuple[str, float]:
    torch.set_num_threads(1)
    started = time.perf_counter()
    channel = load_dataset(data).channel(name)
    norm = Normalisation.fit(channel.train)
    train, test = norm.apply(channel.train), norm.apply(channel.test)
    model = predictor.fit([train], predictor.Params(**settings), seed=0)
    np.savez(out, train=predictor.score(model, train), test=predictor.score(model, test))
    return name, time.perf_counter() - started


def cached_scores(args, name: str, settings: dict, channels: list[str]) -> dict:
    """``{channel: (train, test)}`` of one variant, trained where the cache lacks it."""
    folder = args.cache / name
    folder.mkdir(parents=True, exist_ok=True)
    missing = [c for c in channels if not (folder / f"{c}.npz").exists()]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(_train_one, args.data, c, settings, folder / f"{c}.npz") for c in missing
        ]
        took = [f.result()[1] for f in futures]
    if took:
        print(f"{name}: trained {len(took)} channels, {np.mean(took):.1f} s each", flush=True)
    loaded = {c: np.load(folder / f"{c}.npz") for c in channels}
    return {c: (z["train"], z["test"]) for c, z in loaded.items()}


def normal_mse(dataset, scores: dict) -> float:
    """Mean squared prediction error over the test steps outside the labelled events."""
    errors = [s[1][~dataset.channel(c).labels.astype(bool)] ** 2 for c, s in scores.items()]
    return float(np.mean(np.concatenate(errors)))


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", default="quick", help="';'-separated name=key=value,...")
    parser.add_argument("--cache", type=Path, required=True, help="trained scores, by variant")
    parser.add_argument("-j", "--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    channels = dataset.resolve_channels(args.channels)
    settings, _ = served_postprocessing(args.repository)
    others = served_scores(channels, args.data, args.artifacts, args.repository, OTHERS)
    kinds = tuple(registry.kinds())
    for text in args.variants.split(";"):
        name, params = parse_variant(text)
        scores = cached_scores(args, name, params, channels)
        alone = fused_row({c: [scores[c]] for c in channels}, dataset, settings, ("predictor",))
        pairs = {c: [*(others[k][c] for k in OTHERS), scores[c]] for c in channels}
        fused = fused_row(pairs, dataset, settings, kinds)
        print(
            f"{name:>12}  mse {normal_mse(dataset, scores):.5f}  alone {row_text(alone)}"
            f"  fused {row_text(fused)}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
