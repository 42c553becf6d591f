"""A one-line progress bar on stderr (no dependency), with an ETA.

On a terminal the line is redrawn in place; otherwise (CI logs, `make` output
piped to a file) a plain line is printed every 10 % so the log stays short.
"""

import sys
import time


class Progress:
    def __init__(self, total, stream=None, width=28):
        self.total = max(1, total)
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.monotonic()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_decile = -1
        self.label = ""

    def step(self, label="", n=1):
        self.done = min(self.total, self.done + n)
        self.label = label
        self.draw()

    def set_label(self, label):
        self.label = label
        self.draw()

    def line(self):
        frac = self.done / self.total
        filled = int(frac * self.width)
        elapsed = time.monotonic() - self.start
        eta = (elapsed / self.done * (self.total - self.done)) if self.done else None
        bar = "#" * filled + "." * (self.width - filled)
        return (f"[{bar}] {self.done}/{self.total} {frac * 100:3.0f}% "
                f"{_mmss(elapsed)} elapsed, ETA {_mmss(eta) if eta is not None else '--:--'}"
                f"  {self.label}")

    def draw(self):
        if self.tty:
            cols = 120
            self.stream.write("\r" + self.line()[:cols].ljust(cols))
            self.stream.flush()
        else:
            decile = int(self.done * 10 / self.total)
            if decile != self.last_decile:
                self.last_decile = decile
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def write(self, text):
        """Print a message without garbling the bar."""
        if self.tty:
            self.stream.write("\r" + " " * 120 + "\r")
        self.stream.write(text.rstrip("\n") + "\n")
        self.draw()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def run(self, tool, *phases):
        """Runs `phases` (callables) under the bar; False, with a message, if Ctrl-C
        stopped them (the caller then writes no report)."""
        self.draw()
        try:
            for phase in phases:
                phase()
        except KeyboardInterrupt:
            self.close()
            print(f"{tool}: interrupted; no report written", file=sys.stderr)
            return False
        self.close()
        return True


def _mmss(seconds):
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"
