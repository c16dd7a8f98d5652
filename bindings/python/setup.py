"""Build hook: bundle libllm's shared library into the package when one is at
hand, so an installed `libllm` works without LIBLLM_PATH.

The library bundled is, in order: $LIBLLM_PATH (a file or a directory) at
install time, or build/libllm.so of the checkout holding bindings/python.
With LIBLLM_BUILD=1 and no library found, libllm is built with CMake first
(Release, no tests, into bindings/python/build/cmake-libllm). LIBLLM_BUNDLE=0
installs the pure-Python package only; it then finds the library at run time
(LIBLLM_PATH, the source tree, the system loader).

A wheel with a bundled library is tagged for this platform; one without is
pure Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

if sys.platform == "win32":
    NAMES = ("llm.dll", "libllm.dll")
elif sys.platform == "darwin":
    NAMES = ("libllm.dylib",)
else:
    NAMES = ("libllm.so", "libllm.so.0")


def _in(directory: Path) -> Optional[Path]:
    for name in NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def _cmake_build() -> Optional[Path]:
    if not (REPO / "CMakeLists.txt").is_file() or shutil.which("cmake") is None:
        print("libllm: LIBLLM_BUILD=1 but no CMake or no libllm checkout; not building", file=sys.stderr)
        return None
    build = HERE / "build" / "cmake-libllm"
    jobs = str(os.cpu_count() or 2)
    subprocess.check_call(["cmake", "-S", str(REPO), "-B", str(build),
                           "-DCMAKE_BUILD_TYPE=Release", "-DLLM_TESTS=OFF"])
    subprocess.check_call(["cmake", "--build", str(build), "--target", "llm", "-j", jobs])
    return _in(build)


def find_library() -> Optional[Path]:
    if os.environ.get("LIBLLM_BUNDLE") == "0":
        return None
    env = os.environ.get("LIBLLM_PATH")
    if env:
        p = Path(env)
        found = _in(p) if p.is_dir() else (p if p.is_file() else None)
        if found is None:
            raise SystemExit(f"libllm: LIBLLM_PATH={env} holds no libllm shared library")
        return found
    found = _in(REPO / "build") if (REPO / "include" / "llm.h").is_file() else None
    if found is None and os.environ.get("LIBLLM_BUILD") == "1":
        found = _cmake_build()
    return found


LIBRARY = find_library()


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "libllm" / "_lib"
        if LIBRARY is None:
            shutil.rmtree(dest, ignore_errors=True)  # no stale copy from an earlier build
            return
        dest.mkdir(parents=True, exist_ok=True)
        # The real file (not the symlink chain), under the name looked for first.
        shutil.copyfile(LIBRARY.resolve(), dest / NAMES[0])
        print(f"libllm: bundling {LIBRARY.resolve()}")


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:  # platform wheel when a library is bundled
        return LIBRARY is not None


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
