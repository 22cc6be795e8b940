"""The optional C speed-ups, the one thing pyproject.toml cannot declare without a warning.

Everything else about the package is in pyproject.toml. setuptools' own
``[tool.setuptools.ext-modules]`` table is still experimental and warns on every build, so
the extension is declared here. ``optional=True``: a build without a working C compiler
prints why the extension was skipped and still succeeds, and flagedge then runs the same
paths in pure Python (flagedge._accel picks whichever is importable).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "flagedge._speedups",
            sources=["src/flagedge/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
