"""`pip install ./bindings/python` gives a working package on a machine without RLOG_LIB: the
wheel is built by setuptools-rust from this crate, carries a stripped librlog.so next to the
`rlog` package, and is tagged for the platform (py3-none-linux_ARCH), not `any`.

Builds with `--no-build-isolation` (setuptools-rust and wheel come from .ci/deps) so that the
test needs no network; cargo builds into target/python, incrementally after the first run.
"""

import glob
import os
import platform
import subprocess
import sys
import zipfile

import pytest

import pyhelpers
from pyhelpers import TcpCollector

BUILD_TIMEOUT = 1800  # a first build compiles the whole crate without debug info


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    import importlib.util
    if not all(importlib.util.find_spec(m) for m in ("setuptools_rust", "wheel")):
        msg = "setuptools-rust and wheel are not installed (.ci/deps installs them)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
         "-w", str(out), os.path.join(pyhelpers.ROOT, "bindings", "python")],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    wheels = glob.glob(str(out / "*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_is_a_platform_wheel_with_a_stripped_library(wheel, tmp_path):
    name = os.path.basename(wheel)
    # The PyPI name is librlog ("rlog" there is another project); no Python ABI in the tag.
    assert name == f"librlog-0.1.0-py3-none-linux_{platform.machine()}.whl", name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "rlog/librlog.so" in names, names
        assert "rlog/__init__.py" in names
        assert "Root-Is-Purelib: false" in z.read("librlog-0.1.0.dist-info/WHEEL").decode()
        lib = tmp_path / "librlog.so"
        lib.write_bytes(z.read("rlog/librlog.so"))
    # The debug build is 28 MB; without debug info and symbols it is a few.
    assert lib.stat().st_size < 10_000_000, lib.stat().st_size
    sections = subprocess.run(["readelf", "-S", "--wide", str(lib)], capture_output=True,
                              text=True, check=True).stdout
    assert ".debug_info" not in sections and ".symtab" not in sections
    dynsym = subprocess.run(["readelf", "--dyn-syms", "--wide", str(lib)], capture_output=True,
                            text=True, check=True).stdout
    assert " rlog_logger_new" in dynsym and " rlog_init" in dynsym


INSTALLED_SCRIPT = r"""
import os, sys
import rlog
assert "RLOG_LIB" not in os.environ
lib = rlog.load_library()
print(lib.path)
with rlog.Logger({"host": "127.0.0.1", "port": int(sys.argv[1])}) as lg:
    lg.log("from the installed wheel\n")
    print(lg.flush())
"""


def test_the_installed_package_finds_its_library_without_rlog_lib(wheel, tmp_path):
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--target", str(site), wheel], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("RLOG_LIB", "PYTHONPATH", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(site)
    with TcpCollector() as col:
        r = subprocess.run([sys.executable, "-c", INSTALLED_SCRIPT, str(col.port)], env=env,
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [str(site / "rlog" / "librlog.so"), "25"], r.stdout
        assert col.wait_bytes(25) == b"from the installed wheel\n"
