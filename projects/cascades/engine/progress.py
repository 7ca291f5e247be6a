"""Progress of the loops a user waits for (dataset generation, downloads, conversions, benchmarks).

On a terminal: a tqdm bar with its rate and ETA. Elsewhere (a log file, SLURM, CI), where a bar's
carriage returns pile up into one unreadable line: a plain line every ``interval`` seconds and one at
the end, e.g. ``cascades_shapes_train: 120 of 400 images (30%), 41.2 images/s, about 7 s left``.

    with Progress("converting", total=len(keys), unit="tensors") as progress:
        for key in keys:
            ...
            progress.update()

    for image in progress_over(images, "drawing", unit="images"):
        ...
"""

import sys
import time
from typing import Iterable, Iterator, Optional, TextIO, TypeVar

__all__ = ["Progress", "progress_over", "format_duration"]

T = TypeVar("T")


def format_duration(seconds: float) -> str:
    """``seconds`` as people read it: "42 s", "3 min 5 s", "1 h 02 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts the work done out of ``total`` (unknown when None) in ``unit``s; ``unit="B"`` shows bytes
    as MB. A bar on a terminal ``stream`` (stderr by default), else a line every ``interval`` seconds
    and a last one on :meth:`close` (unless the last line already had the final count)."""

    def __init__(self, label: str, total: Optional[int] = None, unit: str = "it", stream: Optional[TextIO] = None,
                 interval: float = 10.0):
        self.label, self.total, self.unit, self.done = label, total, unit, 0
        self.stream = stream or sys.stderr
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.bar, self.closed, self.reported = None, False, None
        if self.stream.isatty():
            from tqdm import tqdm

            in_bytes = unit == "B"
            self.bar = tqdm(total=total, desc=label, unit=unit, unit_scale=in_bytes, unit_divisor=1024 if in_bytes else 1000,
                            file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.monotonic() - self.last >= self.interval:
            self._line()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.reported != self.done:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _amount(self, n: float) -> str:
        return f"{n / 1e6:.1f} MB" if self.unit == "B" else f"{n:g}"

    def _line(self) -> None:
        now = time.monotonic()
        self.last, self.reported = now, self.done
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        unit = "" if self.unit == "B" else f" {self.unit}"
        line = f"{self.label}: {self._amount(self.done)}"
        if self.total:
            line += f" of {self._amount(self.total)}{unit} ({100 * self.done / self.total:.0f}%)"
        else:
            line += unit
        rate_text = f"{rate / 1e6:.2f} MB/s" if self.unit == "B" else f"{rate:.3g} {self.unit}/s"
        if self.total and self.done < self.total:
            left = f"about {format_duration((self.total - self.done) / rate)} left" if rate > 0 else "time left unknown"
            line += f", {rate_text}, {left}"
        else:
            line += f" in {format_duration(elapsed)}, {rate_text}"
        print(line, file=self.stream, flush=True)


def progress_over(items: Iterable[T], label: str, total: Optional[int] = None, unit: str = "it",
                  stream: Optional[TextIO] = None, interval: float = 10.0) -> Iterator[T]:
    """Yields ``items`` while showing their progress (``total`` defaults to ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(label, total, unit, stream, interval) as progress:
        for item in items:
            yield item
            progress.update()
