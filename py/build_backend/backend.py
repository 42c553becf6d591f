"""PEP 517 backend: builds the preload library, puts it in the package, then lets
maturin build the wheel.

`pip install ./py` from a clone builds in place, so the repository root (with the
allocator's Cargo.toml) is two levels above this file. The library is a separate
cdylib from the extension module: the extension never links the process allocator.
"""

import shutil
import subprocess
from pathlib import Path

import maturin
from maturin import *  # noqa: F401,F403  (the rest of the PEP 517 interface)

PY_DIR = Path(__file__).resolve().parent.parent
ROOT = PY_DIR.parent
TARGET = PY_DIR / "python" / "myalloc" / "libmyalloc.so"


def _build_preload_library():
    manifest = ROOT / "Cargo.toml"
    if not manifest.is_file():
        if TARGET.is_file():
            return  # building from an sdist that already carries the library
        raise RuntimeError(f"cannot find the allocator's Cargo.toml at {manifest}")
    subprocess.run(["cargo", "build", "--release", "--manifest-path", str(manifest)], check=True)
    shutil.copy2(ROOT / "target" / "release" / "libmyalloc.so", TARGET)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _build_preload_library()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _build_preload_library()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
