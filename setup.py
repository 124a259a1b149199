"""Build of the compiled forwarding fast path (``sfu._fastpath``, issue 14).

Everything else is in pyproject.toml. The extension links Debian's libsrtp2 (``apt-get install
libsrtp2-dev``); when it cannot be built the install still succeeds (``optional=True``) and the
SFU uses its pure-Python forwarding path, which it logs once at start.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sfu._fastpath",
            sources=["sfu/_fastpath.c"],
            libraries=["srtp2"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
