"""Command line: ``python -m myalloc run [--stats] [--json FILE] -- CMD ARGS...`` and
``python -m myalloc info``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from . import __version__, library_path, loaded


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def summary(s: Dict[str, int]) -> str:
    """A readable summary of a statistics dict (as written by MYALLOC_STATS_FILE)."""
    return "\n".join([
        f"myalloc: peak brk {_mib(s['brk_extent_peak'])}, peak held {_mib(s['held_bytes_peak'])}",
        f"myalloc: in use at exit {s['in_use_bytes']} bytes in {s['live_blocks']} blocks "
        f"(peak {_mib(s['in_use_bytes_peak'])})",
        f"myalloc: calls: malloc {s['malloc_calls']}, free {s['free_calls']}, "
        f"realloc {s['realloc_calls']}, calloc {s['calloc_calls']}, memalign {s['memalign_calls']}",
    ])


def preload_env(env: Dict[str, str]) -> Dict[str, str]:
    """`env` with libmyalloc.so first in LD_PRELOAD, keeping existing entries."""
    env = dict(env)
    lib = str(library_path())
    rest = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p and p != lib]
    env["LD_PRELOAD"] = " ".join([lib] + rest)
    return env


def run(cmd: List[str], show_all: bool, json_path: Optional[str]) -> int:
    if not cmd:
        print("myalloc run: no command given (usage: python -m myalloc run -- CMD ARGS...)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="myalloc-") as tmp:
        stats_file = Path(tmp) / "stats.json"
        env = preload_env(os.environ)
        env["MYALLOC_STATS_FILE"] = str(stats_file)
        try:
            rc = subprocess.call(cmd, env=env)
        except FileNotFoundError:
            print(f"myalloc run: command not found: {cmd[0]}", file=sys.stderr)
            return 127
        if stats_file.exists():
            s = json.loads(stats_file.read_text())
            print(summary(s), file=sys.stderr)
            if show_all:
                for k, v in s.items():
                    print(f"myalloc: {k} = {v}", file=sys.stderr)
            if json_path:
                Path(json_path).write_text(json.dumps(s, indent=2) + "\n")
        else:
            print("myalloc run: the command left no statistics (it did not exit normally, "
                  "or is statically linked)", file=sys.stderr)
    if rc < 0:
        return 128 - rc if -rc in signal.valid_signals() else 1
    return rc


def info() -> int:
    lib = library_path()
    print(f"myalloc {__version__}")
    print(f"library: {lib}{'' if lib.exists() else ' (missing!)'}")
    print(f"loaded in this process: {'yes' if loaded() else 'no'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m myalloc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run a command on myalloc and summarise its statistics")
    p_run.add_argument("--stats", action="store_true", help="print every statistics field too")
    p_run.add_argument("--json", metavar="FILE", help="write the statistics as JSON to FILE")
    p_run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    sub.add_parser("info", help="version, library path, and whether myalloc is loaded")
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return run(cmd, args.stats, args.json)


if __name__ == "__main__":
    sys.exit(main())
