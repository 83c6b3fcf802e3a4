"""The heartbeat that long loops send to the headless runner (``patchforensics.progress``)."""

from __future__ import annotations

import pytest

from patchforensics import progress


def beats(text: str) -> list[dict]:
    return [progress.parse_heartbeat(line) for line in text.splitlines()
            if line.startswith(progress.PREFIX)]


def test_without_the_variable_bar_is_tqdm_and_beat_is_silent(monkeypatch, capsys):
    from tqdm.auto import tqdm

    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.heartbeat_interval() is None
    b = progress.bar(range(3), desc="x", disable=True)
    assert isinstance(b, tqdm)
    assert list(b) == [0, 1, 2]
    progress.beat("loop", 1, 10)
    assert progress.PREFIX not in capsys.readouterr().out


def test_heartbeat_lines_start_end_and_throttle(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "3600")  # far apart: only the start and the end line
    b = progress.bar(range(5, 50), desc="gan", initial=5, total=50)
    for i, _ in enumerate(b):
        if i == 10:
            b.set_postfix(loss="0.5")
    out = beats(capsys.readouterr().out)
    assert [(r["step"], r["total"]) for r in out] == [(5, 50), (50, 50)]
    assert out[0]["desc"] == "gan" and out[0]["eta"] is None
    assert out[-1]["eta"] == 0.0 and out[-1]["info"] == "loss=0.5"
    assert set(out[-1]) == {"desc", "step", "total", "elapsed", "eta", "info"}


def test_a_zero_interval_beats_every_step_with_an_estimate(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "0.000001")
    b = progress.bar(total=4, desc="manual")
    for _ in range(4):
        b.update()
    b.close()  # the end was just reported: no second line for step 4
    b.close()
    out = beats(capsys.readouterr().out)
    assert [r["step"] for r in out] == [0, 1, 2, 3, 4]
    assert all(r["eta"] is not None and r["eta"] >= 0 for r in out[1:])
    assert out[1]["eta"] >= out[3]["eta"]  # fewer steps left, less time left


def test_disable_silences_the_heartbeat_and_total_comes_from_len(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "0.000001")
    assert list(progress.bar([1, 2], disable=True)) == [1, 2]
    assert capsys.readouterr().out == ""
    list(progress.bar(["a", "b", "c"], desc="list"))
    assert beats(capsys.readouterr().out)[0]["total"] == 3


@pytest.mark.parametrize("value, want", [("", None), ("5", 5.0), ("0", 20.0), ("x", 20.0)])
def test_interval_from_the_variable(monkeypatch, value, want):
    monkeypatch.setenv(progress.ENV, value)
    assert progress.heartbeat_interval() == want


def test_beat_is_throttled_per_loop(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "3600")
    for step in range(1, 4):
        progress.beat("loop-a", step, 10)
        progress.beat("loop-b")
    out = beats(capsys.readouterr().out)
    assert [(r["desc"], r["step"]) for r in out] == [("loop-a", 1), ("loop-b", 0)]
    assert progress.parse_heartbeat("noise " + progress.PREFIX + "{bad json") is None
    assert progress.parse_heartbeat("tqdm\r" + progress.heartbeat_line("d", 1, 2, 1.0, 1.0))[
        "step"] == 1
