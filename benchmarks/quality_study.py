"""Event-wise detection quality study: postprocessing configurations on validation and seed.

Two steps, both reproducible:

1. ``cache``: score the train and test splits of each channel with the trained detectors and
   keep the scores in ``--cache`` (``<detector>/<channel>.npz``: ``train``, ``test`` scores,
   plus for OmniAnomaly ``train_v``/``test_v``, the column-0 (telemetry value) error).
2. ``study``: run every postprocessing configuration on the cached scores and print, for the
   validation channels (non-seed SMAP channels, used to choose) and then for the 27 seed
   channels (reported once per configuration), point F1, point-adjusted F1 and event-wise
   precision / recall / F1 (Telemanom's event definition, ``satwatch.evaluation.metrics``).

Nothing here looks at test labels to set a threshold: thresholds come from training scores
(POT) or from past test scores (the dynamic threshold of ``satwatch.pipeline.dynamic_threshold``).
Every hyperparameter is the same for every channel.

Measured 2026-11-25 (quick profiles: OmniAnomaly per channel, TranAD tranad_sat1 trained on the
27 seed channels; validation = the 12 channels in VALIDATION, 17 labelled events; seed = 34):

    validation            pointF1  paF1   evP    evR    evF1  (tp fp fn)
    pot tranad            0.220   0.436  0.085  0.529  0.146   9 97  8
    telemanom-defaults    0.114   0.792  0.368  0.412  0.389   7 12 10
    CHOSEN batch 10       0.153   0.519  0.900  0.529  0.667   9  1  8
    seed (27)
    pot tranad            0.475   0.651  0.099  0.559  0.168  19 173 15
    telemanom-defaults    0.092   0.863  0.457  0.618  0.525  21 25 13
    CHOSEN batch 10       0.093   0.765  0.696  0.471  0.561  16  7 18

Usage::

    python benchmarks/quality_study.py cache --channels seed --artifacts artifacts \
        --tranad /work/scratch_quality/art --cache /work/scratch_quality/cache
    python benchmarks/quality_study.py study --cache /work/scratch_quality/cache \
        --validation A-7,A-8,... [--seed-report]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from satwatch.data import SEED_CHANNELS, load_dataset
from satwatch.evaluation.events import decisions_to_events
from satwatch.evaluation.metrics import ChannelMetrics, channel_metrics, summarize
from satwatch.pipeline.dynamic_threshold import DynamicSettings, DynamicThreshold

VALIDATION = "A-7,A-8,B-1,D-7,D-11,E-7,E-10,E-13,G-1,G-3,G-7,R-1"


# --------------------------------------------------------------------------- cache


def cache_scores(channels: list[str], omni_root: Path, tranad_root: Path, cache: Path) -> None:
    """Score train and test splits of each channel with both detectors into ``cache``."""
    import torch

    from satwatch.detectors import omnianomaly, tranad
    from satwatch.detectors.artifacts import artifact_dir, load_trained, model_name
    from satwatch.detectors.normalization import Normalisation

    dataset = load_dataset()
    tranad_model, tranad_card = load_trained(
        artifact_dir(tranad_root, "tranad", model_name("tranad", channels[0], "SMAP"))
    )
    for name in channels:
        channel = dataset.channel(name)
        started = time.perf_counter()
        out = cache / "omni" / f"{name}.npz"
        if not out.exists():
            model, card = load_trained(
                artifact_dir(omni_root, "omni", model_name("omni", name, "SMAP"))
            )
            norm = Normalisation.from_dict(card["normalisation"][name])
            arrays = {}
            for split in ("train", "test"):
                x = norm.apply(getattr(channel, split)).astype(np.float32)
                with torch.no_grad():
                    mean, scores, _, _ = model(torch.from_numpy(x).unsqueeze(0))
                arrays[split] = scores[0].numpy()
                arrays[f"{split}_v"] = np.abs(x[:, 0] - mean[0, :, 0].numpy())
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(out, **arrays)
        out = cache / "tranad" / f"{name}.npz"
        if not out.exists():
            stats = tranad_card["normalisation"].get(name)
            if stats is None:
                # Validation channels: TranAD was trained on the seed channels only, so their
                # statistics come from their own training split, as training would fit them.
                norm = Normalisation.fit(channel.train)
            else:
                norm = Normalisation.from_dict(stats)
            arrays = {
                split: tranad.score(tranad_model, norm.apply(getattr(channel, split)))
                for split in ("train", "test")
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(out, **arrays)
        print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    del omnianomaly


# --------------------------------------------------------------------------- study


@dataclass(frozen=True)
class Config:
    """One postprocessing configuration (the same for every channel).

    Attributes:
        name: Row label.
        scores: Which cached scores are fused: ``omni``, ``omni_v``, ``tranad``.
        norm: ``train`` (``(score - training median) / training std``, clipped at 0) or
            ``none``.
        fusion: ``max`` or ``mean`` of the normalised scores.
        method: ``dynamic`` (Telemanom thresholding) or ``pot`` (POT on training scores).
        dynamic: Settings of the dynamic threshold (its ``span`` smooths the fused score).
        floor: Extra floor on the smoothed fused score from the training split: ``none``,
            ``pot`` (POT threshold of the smoothed fused training scores) or ``max`` (their max).
        warm: Prefill the dynamic threshold's window with the fused training scores.
        min_length: Shortest event kept (steps).
        merge_gap: Events closer than this are merged.
        hold: Steps an event is extended forward after its last anomalous step (causal:
            Telemanom's error buffer, forward half only).
    """

    name: str
    scores: tuple[str, ...] = ("omni", "tranad")
    norm: str = "train"
    fusion: str = "max"
    method: str = "dynamic"
    dynamic: DynamicSettings = DynamicSettings(span=105, window=2100, batch=70)
    floor: str = "none"
    warm: bool = False
    min_length: int = 1
    merge_gap: int = 0
    hold: int = 0


def load_cached(cache: Path, score: str, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` scores of one cached score kind."""
    detector, _, suffix = score.partition("_")
    data = np.load(cache / detector / f"{channel}.npz")
    key = "_" + suffix if suffix else ""
    return data["train" + key].astype(np.float64), data["test" + key].astype(np.float64)


def normalise(train: np.ndarray, test: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Scale both splits by training statistics (median, standard deviation), clip at 0."""
    if how == "none":
        return train, test
    centre = np.median(train)
    spread = max(float(np.std(train)), 1e-9)
    return np.maximum((train - centre) / spread, 0), np.maximum((test - centre) / spread, 0)


def merge_and_filter(
    decision: np.ndarray, min_length: int, merge_gap: int, hold: int = 0
) -> np.ndarray:
    """Merge runs separated by at most ``merge_gap`` quiet steps; drop runs under min_length."""
    out = np.zeros_like(decision)
    events: list[list[int]] = []
    for start, end in decisions_to_events(decision):
        if events and start - events[-1][1] - 1 <= merge_gap:
            events[-1][1] = end
        else:
            events.append([start, end])
    for start, end in events:
        if end - start + 1 >= min_length:
            out[start : end + 1 + hold] = True
    return out


def run_config(config: Config, cache: Path, channel: str) -> np.ndarray:
    """Decisions of one channel's test split under ``config``."""
    from satwatch.detectors.thresholds import pot_threshold

    trains, tests = [], []
    for score in config.scores:
        train, test = normalise(*load_cached(cache, score, channel), config.norm)
        trains.append(train)
        tests.append(test)
    reduce: Callable[..., np.ndarray] = np.max if config.fusion == "max" else np.mean
    train = reduce(np.stack(trains), axis=0)
    test = reduce(np.stack(tests), axis=0)
    stage = DynamicThreshold(config.dynamic)
    smoothed_train = stage.update(train).smoothed
    if config.method == "pot":
        smoothed = stage.update(test).smoothed
        decision = smoothed > pot_threshold(smoothed_train)
    else:
        floor = {"none": -np.inf, "pot": None, "max": float(smoothed_train.max())}[config.floor]
        if floor is None:
            floor = pot_threshold(smoothed_train)
        stage = DynamicThreshold(replace(config.dynamic, min_score=float(floor)))
        decision = stage.run(test, warm=train if config.warm else None).decision
    return merge_and_filter(decision, config.min_length, config.merge_gap, config.hold)


_DATASET = []


def evaluate(config: Config, cache: Path, channels: list[str]) -> dict:
    """Micro-averaged metrics of ``config`` over channels."""
    if not _DATASET:
        _DATASET.append(load_dataset())
    dataset = _DATASET[0]
    per: dict[str, ChannelMetrics] = {}
    for name in channels:
        channel = dataset.channel(name)
        decision = run_config(config, cache, name)
        per[name] = channel_metrics(decision, channel.labels, channel.events)
    return summarize(per)


HEADER = f"{'configuration':44s} {'pointF1':>7s} {'paF1':>6s} {'evP':>6s} {'evR':>6s} {'evF1':>6s}"
HEADER += "  tp  fp  fn"


def row(config: Config, overall: dict) -> str:
    """One table row."""
    o = overall
    return (
        f"{config.name:44s} {o['point_f1']:7.3f} {o['pa_f1']:6.3f} {o['event_precision']:6.3f} "
        f"{o['event_recall']:6.3f} {o['event_f1']:6.3f} {o['event_tp']:3d} {o['event_fp']:3d} "
        f"{o['event_fn']:3d}"
    )


TELEMANOM = DynamicSettings(span=105, window=2100, batch=70)
"""Telemanom's defaults: smoothing 5 % of 30 batches x 70 steps, p = 0.13, z 2.5..12."""

CHOSEN = Config(
    "CHOSEN max(omni_v,tranad) s30 fpot W2100 p.13 gap100",
    ("omni_v", "tranad"),
    dynamic=replace(TELEMANOM, span=30),
    floor="pot",
    merge_gap=100,
)
"""Chosen on validation (round 1 and 3 best fused; Telemanom's window and p kept)."""

FINAL = [
    Config(
        "pot omni (card-like POT on train)",
        ("omni",),
        method="pot",
        dynamic=replace(TELEMANOM, span=1),
    ),
    Config("pot tranad", ("tranad",), method="pot", dynamic=replace(TELEMANOM, span=1)),
    Config("pot max(omni,tranad)", method="pot", dynamic=replace(TELEMANOM, span=1)),
    Config("telemanom-defaults max(omni,tranad)", dynamic=TELEMANOM),
    CHOSEN,
    replace(CHOSEN, name="CHOSEN batch 1 (no delay)", dynamic=replace(CHOSEN.dynamic, batch=1)),
    replace(CHOSEN, name="CHOSEN batch 10", dynamic=replace(CHOSEN.dynamic, batch=10)),
    Config(
        "recall-oriented max(omni_v,tranad) s30 W2100 p.08 gap100",
        ("omni_v", "tranad"),
        dynamic=replace(TELEMANOM, span=30, min_decrease=0.08),
        merge_gap=100,
    ),
    Config(
        "single omni_v s105 fpot W1050 p.08 gap100",
        ("omni_v",),
        dynamic=replace(TELEMANOM, window=1050, min_decrease=0.08),
        floor="pot",
        merge_gap=100,
    ),
]
"""The configurations reported on the seed channels, fixed before looking at them.

The recommended one, picked among these on validation before the seed report: ``CHOSEN
batch 10`` (validation event F1 0.667; decision delay at most 9 steps).
"""


def configurations() -> list[Config]:
    """The configurations compared (all hyperparameters chosen on validation only)."""
    telemanom = DynamicSettings(span=105, window=2100, batch=70)
    raw = replace(telemanom, span=1)
    configs = [
        Config("pot omni", ("omni",), method="pot", dynamic=raw),
        Config("pot tranad", ("tranad",), method="pot", dynamic=raw),
        Config("pot max(omni,tranad)", method="pot", dynamic=raw),
        Config("pot max(omni,tranad) span105", method="pot"),
    ]
    score_sets = {
        "omni": ("omni",),
        "omni_v": ("omni_v",),
        "tranad": ("tranad",),
        "omni+tranad": ("omni", "tranad"),
        "omni_v+tranad": ("omni_v", "tranad"),
        "all3": ("omni", "omni_v", "tranad"),
    }
    for label, scores in score_sets.items():
        for span in (1, 30, 105):
            for floor in ("none", "pot"):
                for warm in (False, True):
                    name = f"dyn {label} s{span} f{floor} w{int(warm)}"
                    dyn = replace(telemanom, span=span)
                    configs.append(Config(name, scores, dynamic=dyn, floor=floor, warm=warm))
    # Second round around the first round's best on validation (span 105, no floor, cold).
    for label in ("omni_v", "omni_v+tranad", "all3"):
        for window, p, gap in itertools.product((1050, 2100, 4200), (0.13, 0.25), (0, 100)):
            dyn = replace(telemanom, window=window, min_decrease=p)
            name = f"dyn2 {label} W{window} p{p} gap{gap}"
            configs.append(Config(name, score_sets[label], dynamic=dyn, merge_gap=gap))
    # Third round: the best fusions of rounds 1-2 with smoothing, floor, window and p combined.
    for label, span, floor, window, p in itertools.product(
        ("omni_v+tranad", "omni_v"), (30, 105), ("none", "pot"), (1050, 2100), (0.08, 0.13)
    ):
        dyn = replace(telemanom, span=span, window=window, min_decrease=p)
        name = f"dyn3 {label} s{span} f{floor} W{window} p{p} gap100"
        configs.append(Config(name, score_sets[label], dynamic=dyn, floor=floor, merge_gap=100))
    for hold in (50, 100, 200):
        configs.append(replace(CHOSEN, name=f"hold{hold} {CHOSEN.name}", hold=hold))
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="score channels into the cache")
    c.add_argument("--channels", required=True)
    c.add_argument("--artifacts", type=Path, required=True, help="OmniAnomaly artifacts root")
    c.add_argument("--tranad", type=Path, required=True, help="TranAD artifacts root")
    c.add_argument("--cache", type=Path, required=True)
    s = sub.add_parser("study", help="print the validation (and seed) tables")
    s.add_argument("--cache", type=Path, required=True)
    s.add_argument("--validation", default=VALIDATION)
    s.add_argument("--only", default="", help="comma-separated substrings of config names")
    s.add_argument("--seed-report", action="store_true", help="also report the seed channels")
    s.add_argument("--final", action="store_true", help="only the FINAL configurations")
    s.add_argument("--seed-only", action="store_true", help="report the seed channels only")
    args = parser.parse_args(argv)
    if args.command == "cache":
        names = list(SEED_CHANNELS) if args.channels == "seed" else args.channels.split(",")
        cache_scores(names, args.artifacts, args.tranad, args.cache)
        return 0
    configs = FINAL if args.final else configurations()
    if args.only:
        keys = args.only.split(",")
        configs = [c for c in configs if any(k in c.name for k in keys)]
    groups = [] if args.seed_only else [("validation", args.validation.split(","))]
    if args.seed_report or args.seed_only:
        groups.append(("seed (27 channels)", list(SEED_CHANNELS)))
    for title, channels in groups:
        print(f"\n== {title}: {len(channels)} channels ==")
        print(HEADER)
        for config in configs:
            print(row(config, evaluate(config, args.cache, channels)["overall"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
