"""Builds the ``librlog`` wheel: the ``rlog`` package plus librlog.so, compiled from this
repository's crate by setuptools-rust (``Binding.NoBinding``: a plain cdylib that the package
loads with ctypes, not a Python extension module).

The library does not use the Python C API, so the wheel is tagged ``py3-none-<platform>``: one
wheel per OS/architecture serves every Python 3. The crate is two directories up
(``../../Cargo.toml``): build from a checkout (``pip install ./bindings/python``), not from an
sdist. The build goes to ``target/python`` (``CARGO_TARGET_DIR`` overrides it) with the release
profile minus debug info and with symbols stripped (``CARGO_PROFILE_RELEASE_*`` overrides), so it
neither rebuilds nor overwrites ``target/release``, and the wheel holds a library of a few MB
instead of the 28 MB debug build.
"""

import os

from setuptools import setup
from setuptools_rust import Binding, RustExtension, build_rust

try:  # setuptools >= 70 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools: the wheel package's
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.normpath(os.path.join(HERE, "..", "..", "Cargo.toml"))
if not os.path.isfile(CRATE):
    raise SystemExit(
        f"librlog: the rlog crate is not at {CRATE}: build the Python package from a checkout of "
        "the rlog repository (pip install ./bindings/python), where it can compile librlog.so")

# Where cargo builds, and how: a profile without debug info, stripped at link time (no `strip`
# tool needed). Each can be overridden from the environment.
CARGO_ENV = {
    "CARGO_TARGET_DIR": os.path.join(os.path.dirname(CRATE), "target", "python"),
    "CARGO_PROFILE_RELEASE_DEBUG": "0",
    "CARGO_PROFILE_RELEASE_STRIP": "symbols",
}
env = dict(os.environ)
for key, value in CARGO_ENV.items():
    env.setdefault(key, value)


class BuildRust(build_rust):
    """Installs the library as ``rlog/librlog.so`` (setuptools-rust would name it like an
    extension module, ``librlog.cpython-311-x86_64-linux-gnu.so``), where ``rlog._native`` looks
    for it next to the package."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), "librlog.so")


class BdistWheel(bdist_wheel):
    """``py3-none-<platform>``: the library is native code, but not tied to a Python ABI."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    rust_extensions=[
        RustExtension(
            "rlog.librlog",
            path=CRATE,
            binding=Binding.NoBinding,
            debug=False,
            env=env,
        )
    ],
    cmdclass={"build_rust": BuildRust, "bdist_wheel": BdistWheel},
    zip_safe=False,
)
