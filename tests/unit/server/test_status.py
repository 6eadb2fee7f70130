"""The model table's reasons: from the repository index, completed from the server log."""

from __future__ import annotations

from satwatch.server.status import ModelStatus, explain_from_log, short_reason

LOG = (
    'I1125 10:24:11.1 1 model_lifecycle.cc:472] "loading: good:1"\n'
    'E1125 10:24:11.2 1 model_repository_manager.cc:1460] "Poll failed for model directory '
    "'broken': failed to read text proto from /r/broken/config.pbtxt\"\n"
)


def test_model_without_reason_gets_the_log_line_naming_it():
    table = [ModelStatus("broken", "", "UNAVAILABLE", ""), ModelStatus("good", "1", "READY", "")]
    explained = explain_from_log(table, LOG)
    assert explained[0].reason == (
        "Poll failed for model directory 'broken': failed to read text proto from "
        "/r/broken/config.pbtxt"
    )
    assert explained[1] == table[1]


def test_reason_from_the_index_is_kept():
    row = ModelStatus("broken", "1", "UNAVAILABLE", "from index")
    assert explain_from_log([row], LOG) == [row]


def test_short_reason_drops_the_python_traceback():
    reason = "Internal: FileNotFoundError: model file not found\n\nAt:\n  model.py(1): initialize\n"
    assert short_reason(reason) == "Internal: FileNotFoundError: model file not found"


def test_model_named_without_quotes_is_matched_as_a_whole_word():
    log = (
        'E1 x.cc:703] "Invalid argument: ensemble pipe contains models that are not available"\n'
        'E1 x.cc:703] "Invalid argument: ensemble pipe-2 contains nothing"\n'
    )
    table = [ModelStatus("pipe", "", "UNAVAILABLE", ""), ModelStatus("pip", "", "UNAVAILABLE", "")]
    explained = explain_from_log(table, log)
    assert explained[0].reason.startswith("Invalid argument: ensemble pipe contains")
    assert explained[1].reason == ""
