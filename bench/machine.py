"""Facts about the machine a benchmark ran on, for REPORT.md and results.json.

Allocator figures depend on the CPU, the core count (thread caches, sort's
threads), the kernel (brk/mmap placement, THP) and the glibc version (the
baseline itself), so every report records them next to the numbers.
"""

import os
import platform
import re
import subprocess
import sys

from allocators import glibc_version, repo_commit

#: Programs whose versions go into the report (first line of `--version`).
TOOLS = ("ls", "grep", "sort", "gcc", "sqlite3", "git", "xz", "strace")


def _first_line(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory():
    try:
        with open("/proc/meminfo") as f:
            kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
        return f"{kib / (1 << 20):.1f} GiB"
    except (OSError, AttributeError):
        return "unknown"


def _os_name():
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def describe(python_path):
    tools = {}
    for tool in TOOLS:
        line = _first_line([tool, "--version"] if tool != "strace" else [tool, "-V"])
        if line:
            m = re.search(r"\d+\.\d+(?:\.\d+)?", line)
            tools[tool] = m.group(0) if m else line
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _memory(),
        "kernel": platform.release(),
        "glibc": glibc_version(),
        "os": _os_name(),
        "python": f"{platform.python_version()} ({python_path})",
        "driver_python": sys.version.split()[0],
        "commit": repo_commit(),
        "tools": tools,
    }
