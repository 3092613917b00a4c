"""Progress of the long steps, for a person at a terminal and for a log file.

On a terminal: tqdm's bar, redrawn in place. Otherwise (output piped to a file, ``nohup``, cron,
CI): tqdm would either draw nothing or fill the log with carriage returns, so a plain line is
written every :data:`LOG_SECONDS` seconds instead — what is done, the rate and the time left,
e.g. ``extract: 1200/5000 photos, 41.3 photos/s, 1:32 left`` — and a last line when the step ends.
A step shorter than the interval writes nothing.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm

# Seconds between two progress lines in a log (IMGCLUST_PROGRESS_SECONDS sets it): often enough to
# see a run is alive, rare enough that a day-long extraction writes a few thousand lines.
LOG_SECONDS = 30.0


def log_seconds() -> float:
    """:data:`LOG_SECONDS`, or ``IMGCLUST_PROGRESS_SECONDS`` when set to a positive number."""
    try:
        seconds = float(os.environ.get("IMGCLUST_PROGRESS_SECONDS", LOG_SECONDS))
    except ValueError:
        return LOG_SECONDS
    return seconds if seconds > 0 else LOG_SECONDS


class LogProgress(tqdm):
    """A tqdm whose display is one plain line (no ``\\r``, no bar) at most every ``mininterval``
    seconds, the first only after one interval, and a last one on close if any was written."""

    def __init__(self, *args, **kwargs):
        self._lines = 0
        self._quiet = True  # tqdm's __init__ draws once: nothing is done yet
        super().__init__(*args, **kwargs)
        self._quiet = False

    def display(self, msg=None, pos=None):
        if self._quiet:
            return True
        self.fp.write(self.line() + "\n")
        self.fp.flush()
        self._lines += 1
        return True

    def close(self):
        if not self.disable and self._lines and self.n != self.last_print_n:
            self.display()  # the last line: where the step ended
        self._quiet = True
        self.sp = None  # tqdm's close then skips its own last drawing and newline
        super().close()

    def line(self) -> str:
        """``desc: n/total unit, rate unit/s, time left`` (total and time left when known)."""
        d = self.format_dict
        elapsed, n, total, unit = d["elapsed"], d["n"], d["total"], d["unit"]
        rate = n / elapsed if elapsed > 0 else 0.0
        done = f"{n}/{total}" if total else f"{n}"
        text = f"{self.desc.rstrip(': ') or 'progress'}: {done} {unit}, {rate:.1f} {unit}/s"
        if total and rate > 0:
            text += f", {tqdm.format_interval((total - n) / rate)} left"
        return text


def progress_bar(iterable=None, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm progress bar on stderr when it is a terminal, else a :class:`LogProgress`; disabled
    when not ``enabled`` (``-q``). ``kwargs`` go to tqdm (``total``, ``unit``, ``desc``)."""
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    stream = sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, **kwargs)
    return LogProgress(iterable, file=stream, mininterval=log_seconds(), miniters=1, leave=True, **kwargs)
