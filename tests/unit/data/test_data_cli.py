"""``satwatch data synth|download|info`` through the real root CLI."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from satwatch.cli import app

RUNNER = CliRunner()


def test_synth_then_info_on_the_result(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    result = RUNNER.invoke(
        app, ["data", "synth", "--out", str(out), "--seed", "1", "--channels", "3",
              "--train-length", "500", "--test-length", "1500"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 3 channels" in result.output
    result = RUNNER.invoke(app, ["data", "info", "--data", str(out)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "E-3" in result.output and "telemanom" in result.output


def test_info_on_seed_channels_shows_flags(shared_data: Path) -> None:
    result = RUNNER.invoke(
        app, ["data", "info", "--data", str(shared_data), "--channels", "seed"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "221,174" in result.output
    assert "constant train" in result.output


def test_info_unknown_channel_is_one_red_line_and_exit_1(synth_data: Path) -> None:
    result = RUNNER.invoke(app, ["data", "info", "--data", str(synth_data), "-c", "E-99"])
    assert result.exit_code == 1
    assert "unknown SMAP channel 'E-99'" in result.output
    assert "Traceback" not in result.output


def test_download_without_network_exits_1_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.zip"
    result = RUNNER.invoke(
        app, ["data", "download", "--out", str(tmp_path), "--data-url", url, "--labels-url", url],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "needs internet access" in result.output
