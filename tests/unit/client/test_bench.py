"""The pure parts of ``satwatch bench``: settings, percentiles, Triton's statistics, figures."""

from __future__ import annotations

import numpy as np
import pytest

from satwatch.client.bench import (
    SPLIT,
    BenchReport,
    Level,
    Replay,
    ServerTotals,
    Throughput,
    check_settings,
    full_chunks,
    model_channel,
    parse_concurrency,
    percentiles_ms,
    server_split,
    statistics_totals,
)
from satwatch.exceptions import ClientError, DataError


def test_concurrency_levels_parse_in_order_without_repeats() -> None:
    assert parse_concurrency("1,4,16,32") == [1, 4, 16, 32]
    assert parse_concurrency(" 4, 1 ,4") == [4, 1]


@pytest.mark.parametrize("text", ["0", "a,b", "", "1,,2", "-1", "1.5", "257"])
def test_a_bad_concurrency_list_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ClientError, match="--concurrency"):
        parse_concurrency(text)


def test_duration_and_chunk_are_checked() -> None:
    check_settings(0.5, 256)
    with pytest.raises(ClientError, match="--duration"):
        check_settings(0, 256)
    with pytest.raises(ClientError, match="--duration"):
        check_settings(-1.0, 256)
    with pytest.raises(DataError, match="chunk"):
        check_settings(1.0, 0)
    with pytest.raises(DataError, match="at most 65536"):
        check_settings(1.0, 65_537)


def test_percentiles_are_in_ms_and_ordered() -> None:
    seconds = np.random.default_rng(0).exponential(0.01, 1000)
    figures = percentiles_ms(seconds)
    assert list(figures) == ["p50_ms", "p90_ms", "p95_ms", "p99_ms"]
    assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    assert figures["p50_ms"] == pytest.approx(np.median(seconds) * 1e3, abs=1e-3)


def test_percentiles_of_one_latency_all_equal_it_and_of_none_are_none() -> None:
    assert set(percentiles_ms([0.004]).values()) == {4.0}
    assert set(percentiles_ms([]).values()) == {None}


def _grpc_answer(model: str, count: int, scale: int) -> dict:
    """What ``get_inference_statistics(as_json=True)`` gives: strings, zero fields left out."""
    parts = {
        part: {"count": str(count), "ns": str(scale * (i + 1))} for i, part in enumerate(SPLIT)
    }
    stats = {"success": {"count": str(count), "ns": "1"}, "fail": {}, **parts}
    return {
        "model_stats": [
            {
                "name": model,
                "version": "1",
                "execution_count": str(count),
                "inference_stats": stats,
            },
            {"name": "other", "version": "1", "inference_stats": {"success": {"count": "99"}}},
        ]
    }


def test_grpc_statistics_are_summed_for_the_model_only() -> None:
    totals = statistics_totals(_grpc_answer("SMAP_E-1", 4, 1000), "SMAP_E-1")
    assert totals.requests == 4 and totals.executions == 4 and totals.failures == 0
    assert totals.nanoseconds == {
        "queue": 1000,
        "compute_input": 2000,
        "compute_infer": 3000,
        "compute_output": 4000,
    }


def test_a_model_with_no_request_yet_has_zero_totals() -> None:
    answer = {"model_stats": [{"name": "m", "version": "1", "inference_stats": {"success": {}}}]}
    assert statistics_totals(answer, "m") == ServerTotals(0, 0, 0, dict.fromkeys(SPLIT, 0))


def test_http_statistics_with_two_versions_are_summed() -> None:
    row = {
        "name": "m",
        "execution_count": 3,
        "inference_stats": {
            "success": {"count": 3, "ns": 9},
            "fail": {"count": 1, "ns": 2},
            **{part: {"count": 3, "ns": 300} for part in SPLIT},
        },
    }
    totals = statistics_totals({"model_stats": [row, {**row, "version": "2"}]}, "m")
    assert (totals.requests, totals.executions, totals.failures) == (6, 6, 2)
    assert set(totals.nanoseconds.values()) == {600}


def test_the_split_is_the_difference_per_request_in_ms() -> None:
    before = statistics_totals(_grpc_answer("m", 10, 1_000_000), "m")
    after = statistics_totals(_grpc_answer("m", 30, 5_000_000), "m")
    split = server_split(before, after)
    assert split["server_requests"] == 20 and split["server_executions"] == 20
    assert split["server_failures"] == 0
    # queue: (5e6 - 1e6) ns over 20 requests = 0.2 ms; each later part is that times 2, 3, 4.
    assert split["server_queue_ms"] == pytest.approx(0.2)
    assert split["server_compute_input_ms"] == pytest.approx(0.4)
    assert split["server_compute_infer_ms"] == pytest.approx(0.6)
    assert split["server_compute_output_ms"] == pytest.approx(0.8)


def test_no_request_between_two_snapshots_gives_no_split() -> None:
    totals = statistics_totals(_grpc_answer("m", 5, 100), "m")
    split = server_split(totals, totals)
    assert split["server_requests"] == 0
    assert all(split[f"server_{part}_ms"] is None for part in SPLIT)


def test_chunks_are_all_full_and_a_short_series_is_repeated() -> None:
    rows = np.arange(50 * 2, dtype=np.float32).reshape(50, 2)
    chunks = full_chunks(rows, 16)
    assert [len(c) for c in chunks] == [16, 16, 16]
    np.testing.assert_array_equal(np.concatenate(chunks), rows[:48])
    short = full_chunks(rows[:5], 12)
    assert len(short) == 1 and short[0].shape == (12, 2)
    np.testing.assert_array_equal(short[0][5:10], rows[:5])


def test_a_per_channel_detector_streams_its_own_channel() -> None:
    assert model_channel("SMAP_E-1") == "E-1"
    assert model_channel("nearest_SMAP_P-7") == "P-7"
    assert model_channel("tranad_sat1") == "E-1"
    assert model_channel("custom_logic") == "E-1"


def _level(concurrency: int, requests_per_s: float) -> Level:
    latency = {"p50_ms": 1.0, "p90_ms": 2.0, "p95_ms": 3.0, "p99_ms": 4.0}
    server = server_split(ServerTotals(), ServerTotals())
    return Level(concurrency, 10, 1.0, requests_per_s, requests_per_s * 256, latency, server)


def test_bench_json_leaves_out_the_parts_that_did_not_run() -> None:
    report = BenchReport("SMAP_E-1", "grpc", "127.0.0.1:8001", 256, 1.0, "synthetic")
    report.runs = [_level(1, 100.0), _level(4, 300.0)]
    data = report.to_json()
    assert data["model"] == "SMAP_E-1"
    assert [run["concurrency"] for run in data["runs"]] == [1, 4]
    assert data["runs"][1]["steps_per_s"] == 300.0 * 256
    assert "server_compute_infer_ms" in data["runs"][0]
    assert not {"baseline", "ratio", "replay"} & set(data)


def test_the_ratio_is_the_best_level_over_the_in_process_baseline() -> None:
    report = BenchReport("SMAP_E-1", "grpc", "127.0.0.1:8001", 256, 1.0, "synthetic")
    report.runs = [_level(1, 100.0), _level(4, 300.0), _level(16, 250.0)]
    report.baseline = Throughput(400, 1.0, 400.0, 400.0 * 256)
    report.replay = Replay(["E-1"], 1024, 1000, 2.0, 1.0, 0.5, 0.0, True)
    data = report.to_json()
    assert report.best is not None and report.best.concurrency == 4
    assert data["ratio"] == 0.75
    assert data["baseline"] == {"requests_per_s": 400.0, "steps_per_s": 102400.0}
    assert data["replay"]["steps_per_s"] == 500.0 and data["replay"]["ratio"] == 0.5
    assert data["replay"]["decisions_equal"] is True
    assert data["replay"]["chunk"] == 1024
