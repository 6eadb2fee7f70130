"""``satwatch bench`` against the real embedded Triton serving the built seed repository.

Short levels (0.5 s) and no timing assertions: the figures are checked for consistency with
each other (rates, percentiles, the server's own request count, the ratios), the served
replay's answers against the same pipeline in process, and the files written.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satwatch.cli import app
from satwatch.client.bench import SPLIT
from satwatch.data import load_dataset

from .builders import Built, built_repository, served_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RUNNER = CliRunner()
CHUNK = 256
RUN_KEYS = {"concurrency", "requests_per_s", "steps_per_s", "p50_ms", "p90_ms", "p95_ms"}
RUN_KEYS |= {"p99_ms", *(f"server_{part}_ms" for part in SPLIT)}
REPLAY_KEYS = {"seconds", "steps", "steps_per_s", "inprocess_seconds", "ratio"}
REPLAYED = ["A-5", "S-1"]
"""The two shortest seed test splits (4,693 and 7,331 steps)."""


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data: Path) -> Built:
    return built_repository(tmp_path_factory, shared_data, webhook_server())


@pytest.fixture(scope="module")
def served(triton_factory, built: Built):
    return served_repository(triton_factory, built)


def _bench(served, built: Built, output: Path, *args: str) -> tuple[dict, str]:
    command = ["bench", "--duration", "0.5", "--concurrency", "1,2", "--chunk", str(CHUNK)]
    command += ["--repository", str(built.repository), "--admin-key", served.admin_key]
    command += ["--output", str(output), *args]
    result = RUNNER.invoke(app, command)
    assert result.exit_code == 0, result.output
    return json.loads((output / "bench.json").read_text()), result.output


def _check_runs(data: dict) -> None:
    assert [run["concurrency"] for run in data["runs"]] == [1, 2]
    for run in data["runs"]:
        assert set(run) >= RUN_KEYS, run
        assert run["requests"] >= run["concurrency"]
        assert run["requests_per_s"] == pytest.approx(run["requests"] / run["seconds"], rel=5e-3)
        assert run["steps_per_s"] == pytest.approx(run["requests_per_s"] * CHUNK, rel=1e-4)
        assert 0 < run["p50_ms"] <= run["p90_ms"] <= run["p95_ms"] <= run["p99_ms"]
        # Triton counted exactly the timed requests (the warm-up ones came before).
        assert run["server_requests"] == run["requests"] and run["server_failures"] == 0
        assert all(run[f"server_{part}_ms"] >= 0 for part in SPLIT)


@pytest.mark.parametrize(("model", "protocol"), [("SMAP_E-1", "grpc"), ("tranad_sat1", "http")])
def test_bench_measures_a_detector_beside_its_file_in_process(
    served, built, shared_data, tmp_path, model, protocol
) -> None:
    address = served.grpc_address if protocol == "grpc" else served.http_address
    data, printed = _bench(
        served,
        built,
        tmp_path,
        "--model",
        model,
        "--protocol",
        protocol,
        "--url",
        address,
        "--data",
        str(shared_data),
        "--baseline",
    )
    assert data["model"] == model and data["protocol"] == protocol
    _check_runs(data)
    best = max(run["steps_per_s"] for run in data["runs"])
    baseline = data["baseline"]
    assert baseline["steps_per_s"] == pytest.approx(baseline["requests_per_s"] * CHUNK, rel=1e-4)
    assert data["ratio"] == pytest.approx(best / baseline["steps_per_s"], rel=1e-3, abs=1e-4)
    assert "replay" not in data
    assert "test split of E-1 (normalised by preprocessing)" in " ".join(printed.split())
    png = tmp_path / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_replays_custom_logic_beside_the_same_pipeline_in_process(
    served, built, shared_data, tmp_path
) -> None:
    data, printed = _bench(
        served,
        built,
        tmp_path,
        "--model",
        "custom_logic",
        "--url",
        served.grpc_address,
        "--data",
        str(shared_data),
        "--channels",
        ",".join(REPLAYED),
        "--baseline",
        "--replay",
        "--replay-chunk",
        "512",
    )
    _check_runs(data)
    # custom_logic has no one file to run in process: the baseline says so and is left out.
    assert "--baseline skipped" in printed
    assert not {"baseline", "ratio"} & set(data)
    replay = data["replay"]
    assert set(replay) >= REPLAY_KEYS
    assert replay["chunk"] == 512 and data["chunk"] == CHUNK  # the replay's own chunk size
    dataset = load_dataset(shared_data)
    assert replay["steps"] == sum(dataset.channel(c).test.shape[0] for c in REPLAYED)
    assert replay["steps_per_s"] == pytest.approx(replay["steps"] / replay["seconds"], rel=5e-3)
    assert replay["ratio"] == pytest.approx(
        replay["inprocess_seconds"] / replay["seconds"], rel=5e-3
    )
    # The served pipeline answers exactly as the same files and postprocessing in process.
    assert replay["max_score_difference"] == 0.0
    assert replay["decisions_equal"] is True
    assert (tmp_path / "bench.png").is_file()


def test_bench_without_telemetry_sends_random_chunks_and_skips_the_replay(
    served, built, tmp_path
) -> None:
    data, printed = _bench(
        served,
        built,
        tmp_path / "out",
        "--url",
        served.grpc_address,
        "--data",
        str(tmp_path / "no-data"),
        "--replay",
    )
    _check_runs(data)
    text = " ".join(printed.split())
    assert "synthetic random chunks of 25 features" in text
    assert "--replay skipped: no telemetry at" in text
    assert not {"baseline", "ratio", "replay"} & set(data)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _error_line(args: list[str]) -> str:
    result = RUNNER.invoke(app, ["bench", *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output[result.output.index("error:") :].split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--concurrency", "0"], "error: --concurrency: expected each level from 1 to 256, got 0"),
        (["--concurrency", "a,b"], "error: --concurrency: expected whole numbers"),
        (["--duration", "0"], "error: --duration: expected seconds above 0, got 0"),
        (["--chunk", "0"], "error: chunk: expected at least 1 step, got 0"),
        (["--replay", "--replay-chunk", "0"], "error: chunk: expected at least 1 step, got 0"),
        (["--protocol", "udp"], "error: --protocol: expected grpc or http, got 'udp'"),
        (["--model", "preprocessing"], "error: model: expected a detector (SMAP_<channel>"),
    ],
)
def test_bench_refuses_bad_options_in_one_line(args: list[str], expected: str) -> None:
    assert _error_line(args).startswith(expected)


def test_bench_names_a_model_the_server_does_not_serve(served) -> None:
    line = _error_line(
        ["--model", "SMAP_X-9", "--url", served.grpc_address, "--admin-key", served.admin_key]
    )
    assert line.startswith("error: model 'SMAP_X-9' is not in the repository served at ")


def test_bench_without_a_server_says_how_to_start_it() -> None:
    url = f"127.0.0.1:{_free_port()}"
    assert _error_line(["--url", url]) == (
        f"error: no Triton server answers at {url} (grpc): start it with `satwatch serve` "
        "(or pass --url/--protocol of the running one)"
    )
