"""Two spacecraft in one repository: SMAP's seed build, then a 7-feature SAT2 built beside it.

The second build keeps the first one's channels (catalog, statistics, thresholds) and gives
the models that route both, ``preprocessing`` and ``custom_logic``, rows of any width; each
channel's rows must still have that channel's training width, and both spacecraft's channels
answer through ``custom_logic`` from the same server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from satwatch.data import load_dataset
from satwatch.data.synth import synthesize
from satwatch.pipeline.catalog import read_catalog
from satwatch.repository.build import build_repository
from satwatch.repository.config import load_config

from .builders import TINY, Built, built_repository, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SAT2_CHANNELS = ["Z-1", "Z-2"]  # synth names channels past the 27 seed ones Z-1, Z-2, ...
WIDTH = 7


@pytest.fixture(scope="module")
def repository(tmp_path_factory, shared_data: Path) -> Path:
    smap: Built = built_repository(tmp_path_factory, shared_data, webhook_server())
    root = tmp_path_factory.mktemp("side_by_side")
    shutil.copytree(smap.repository, root / "repository")
    data = root / "data"
    synthesize(
        data, seed=5, channels=29, train_length=400, test_length=1000, features=WIDTH,
        spacecraft="SAT2",
    )  # fmt: skip
    report = build_repository(
        root / "artifacts",
        root / "repository",
        data,
        channels=SAT2_CHANNELS,
        spacecraft="SAT2",
        overrides=TINY,
    )
    assert report.problems == []
    return root / "repository"


def test_the_catalog_holds_both_spacecraft_and_the_routers_take_any_width(repository) -> None:
    catalog = read_catalog(repository / "python" / "custom_logic" / "1" / "catalog.db")
    assert catalog["E-1"].spacecraft == "SMAP" and catalog["Z-1"].spacecraft == "SAT2"
    assert [m.model for m in catalog["E-1"].models][0] == "SMAP_E-1"
    assert [m.model for m in catalog["Z-2"].models][0] == "SAT2_Z-2"
    for model in ("custom_logic", "preprocessing"):
        config = load_config(repository / "python" / model / "config.pbtxt")
        raw = next(t for t in config.input if t.name == "raw_input")
        assert list(raw.dims) == [-1, -1], model


def _custom_logic(client, channel: str, raw: np.ndarray):  # noqa: ANN001, ANN202
    inputs = []
    for name, array in (("channel_id", np.array([channel.encode()], object)), ("raw_input", raw)):
        dtype = "BYTES" if name == "channel_id" else "FP32"
        tensor = httpclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return client.infer("custom_logic", inputs)


def test_both_spacecraft_answer_and_each_channel_keeps_its_width(
    repository, triton_for_test, shared_data: Path
) -> None:
    served = triton_for_test(repository)
    smap = load_dataset(shared_data).channel("E-1").test[:256].astype(np.float32)
    sat2 = load_dataset(repository.parent / "data", "SAT2").channel("Z-1")
    with httpclient.InferenceServerClient(served.http_address) as client:
        for channel, rows in (("E-1", smap), ("Z-1", sat2.test[:256].astype(np.float32))):
            result = _custom_logic(client, channel, rows)
            assert result.as_numpy("final_result").shape == (256,), channel
        for channel, expected, sent in (("E-1", 25, WIDTH), ("Z-1", WIDTH, 25)):
            refused = rf"(?s){expected}\) of channel '{channel}'.*got \(4, {sent}\)"
            with pytest.raises(InferenceServerException, match=refused):
                _custom_logic(client, channel, np.zeros((4, sent), np.float32))
