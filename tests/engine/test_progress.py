"""cascades.engine.progress: lines instead of a bar when the stream is not a terminal."""

import io

from cascades.engine import progress as progress_module
from cascades.engine.progress import Progress, format_duration, progress_over


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_every_interval_and_at_the_end(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    stream = io.StringIO()
    with Progress("generating", total=10, unit="images", stream=stream, interval=5) as progress:
        for _ in range(10):
            clock.now += 1
            progress.update()
    # 1 image/s: a line after 5 and 10 s; closing adds none, the last line having the final count.
    assert stream.getvalue().splitlines() == [
        "generating: 5 of 10 images (50%), 1 images/s, about 5 s left",
        "generating: 10 of 10 images (100%) in 10 s, 1 images/s",
    ]


def test_bytes_unknown_total_and_one_closing_line(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    stream = io.StringIO()
    progress = Progress("balloon.zip", total=None, unit="B", stream=stream, interval=60)
    clock.now += 2
    progress.update(3_000_000)
    progress.close()
    progress.close()
    assert stream.getvalue().splitlines() == ["balloon.zip: 3.0 MB in 2 s, 1.50 MB/s"]


def test_progress_over_yields_every_item_and_counts_them(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    stream = io.StringIO()
    seen = []
    for item in progress_over(["a", "b", "c"], "drawing", unit="images", stream=stream, interval=1e9):
        clock.now += 90
        seen.append(item)
    assert seen == ["a", "b", "c"]
    assert stream.getvalue() == "drawing: 3 of 3 images (100%) in 4 min 30 s, 0.0111 images/s\n"


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 59, 61, 3599, 3725)] == ["0 s", "59 s", "1 min 1 s", "59 min 59 s",
                                                                       "1 h 02 min"]


def test_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with Progress("x.zip", 4 * 1024 * 1024, unit="B", stream=screen, interval=0) as progress:
        progress.update(4 * 1024 * 1024)
    assert "x.zip: 100%" in screen.getvalue() and "4.00M/4.00M" in screen.getvalue()
