"""Would a third detector help? A next-value predictor's error fused with the served scores.

Telemanom (Hundman et al., KDD 2018) thresholds the error of an LSTM that predicts the next
telemetry value; its published SMAP result is the best event-wise one (F1 about 0.855). The
served detectors reconstruct rather than predict, and recall is what limits the fused result
(``quality_study.py``). This study measures what a predictor's error would add before anyone
builds a third detector family into every layer (export, repository, ensembles, catalog,
postprocessing, client, report).

The predictor is the served one, :mod:`satwatch.detectors.predictor` with its default
settings: one GRU (64 units) over the 25 normalised features, a linear head predicting the
next step's telemetry value (column 0), trained per channel for 10 epochs on 250-step windows
(stride 5, the first 20 predictions of each window not scored), Adam 1e-3, seed 0; about 14 s
per channel on one core. It runs once over the series with its state carried, so the error
of step ``t`` is ``|x_t[0] - prediction made at t - 1|`` (0 at ``t = 0``).

Measured 2026-11-25, cached as ``pred`` beside the ``quality_study`` scores, and judged with
the served postprocessing (RECOMMENDED, the fused scores replaced):

    validation (27 non-seed channels)     pointF1  paF1   evP    evR    evF1  (tp fp fn)
    RECOMMENDED max(omni_v,tranad)         0.209   0.599  0.955  0.618  0.750  21  1 13
    pred only                              0.222   0.628  0.537  0.647  0.587  22 19 12
    max(pred,omni_v,tranad)                0.251   0.628  0.958  0.676  0.793  23  1 11
    max(pred,tranad)                       0.253   0.625  0.815  0.647  0.721  22  5 12
    Telemanom's settings, pred only        0.191   0.957  0.667  0.647  0.657  22 11 12
    seed (27 channels)
    RECOMMENDED max(omni_v,tranad)         0.093   0.764  0.842  0.471  0.604  16  3 18
    pred only                              0.109   0.902  0.595  0.647  0.620  22 15 12
    max(pred,omni_v,tranad)                0.109   0.831  0.850  0.500  0.630  17  3 17
    max(pred,tranad)                       0.110   0.836  0.692  0.529  0.600  18  8 16
    Telemanom's settings, pred only        0.132   0.916  0.655  0.559  0.603  19 10 15

Trained twice as long (``cache --epochs 20``, cached as ``pred20``), the predictor alone does
better under Telemanom's own settings, validation 0.742 (23/5/11), but fused with the served
scores it does worse, 0.727 (24/8/10); with 34 events a row is only a couple of events from
its neighbours.

Served since 2026-12-02 as the fourth detector (``satwatch.detectors.predictor``, these
settings): fused with OmniAnomaly, TranAD and the nearest window it gives validation 0.812
(26/4/8) against 0.781 without it (``satwatch study``). Before the nearest window existed it
was not adopted: the third score adds two validation events and one seed event. Of the 11
validation events fused with it still misses, 8 (A-7, A-8, A-9, E-13's three, G-1, G-3) show
no signal in any of the three scores, the predictor's included: inside the event no smoothed
score rises above both its training maximum and its level elsewhere in the test split. Two
OmniAnomaly variants of the column-0 score were measured the same way and gave nothing over
the served one: its negative log-likelihood of column 0 alone (0.724 with TranAD) and its
column-0 z-score (0.750, the same events).

Usage::

    python benchmarks/predictor_study.py cache --channels all --cache runs/quality/cache \
        [--epochs 20]
    python benchmarks/predictor_study.py study --cache runs/quality/cache [--seed-report]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from quality_study import RECOMMENDED, TELEMANOM, VALIDATION, Config, print_table

from satwatch.data import SEED_CHANNELS, load_dataset
from satwatch.detectors import predictor
from satwatch.detectors.normalization import Normalisation


def cache_errors(channels: list[str], cache: Path, params: predictor.Params) -> None:
    """Train a predictor per channel; write ``<cache>/<cache_key>/<channel>.npz`` (train, test)."""
    torch.set_num_threads(1)
    dataset = load_dataset()
    folder = cache / cache_key(params.epochs)
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(channels, 1):
        out = folder / f"{name}.npz"
        if out.exists():
            continue
        started = time.perf_counter()
        channel = dataset.channel(name)
        norm = Normalisation.fit(channel.train)
        train, test = norm.apply(channel.train), norm.apply(channel.test)
        model = predictor.fit([train], params, seed=0)
        np.savez(out, train=predictor.score(model, train), test=predictor.score(model, test))
        took = time.perf_counter() - started
        print(f"[{index}/{len(channels)}] {name}: {took:.1f} s", file=sys.stderr, flush=True)


def cache_key(epochs: int) -> str:
    """The cached score's name: ``pred`` for the default training, ``pred<epochs>`` otherwise."""
    return "pred" if epochs == predictor.Params.epochs else f"pred{epochs}"


def configurations(key: str = "pred") -> list[Config]:
    """The rows of the module doc (fixed before the seed report) for one cached predictor."""
    return [
        replace(RECOMMENDED, name=f"{key} only", scores=(key,)),
        replace(RECOMMENDED, name=f"max({key},omni_v,tranad)", scores=(key, "omni_v", "tranad")),
        replace(RECOMMENDED, name=f"max({key},tranad)", scores=(key, "tranad")),
        Config(f"Telemanom's settings, {key} only", (key,), dynamic=TELEMANOM),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="train a predictor per channel and cache its errors")
    c.add_argument("--channels", required=True, help="'seed', 'all' or a comma-separated list")
    c.add_argument("--cache", type=Path, required=True, help="the quality_study cache folder")
    c.add_argument("--epochs", type=int, default=predictor.Params.epochs, help="training epochs")
    s = sub.add_parser("study", help="print the validation (and seed) tables")
    s.add_argument("--cache", type=Path, required=True)
    s.add_argument("--seed-report", action="store_true", help="also report the seed channels")
    args = parser.parse_args(argv)
    if args.command == "cache":
        params = predictor.Params(epochs=args.epochs)
        cache_errors(load_dataset().resolve_channels(args.channels), args.cache, params)
        return 0
    keys = sorted(p.name for p in args.cache.glob("pred*") if p.is_dir())
    groups = [("validation", VALIDATION.split(","))]
    if args.seed_report:
        groups.append(("seed", list(SEED_CHANNELS)))
    for title, channels in groups:
        # Every predictor cached for these channels (pred, pred20, ...) after the served row.
        ready = [k for k in keys if all((args.cache / k / f"{c}.npz").exists() for c in channels)]
        for key in sorted(set(keys) - set(ready)):
            print(f"{key}: not cached for every {title} channel (run `cache`); left out")
        configs = [RECOMMENDED] + [c for key in ready for c in configurations(key)]
        print_table(title, channels, configs, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
