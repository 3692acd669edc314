"""The optional C speedups (streamlet.native); everything else is in pyproject.toml.

``optional=True``: where no C compiler is, the install goes on without them
and streamlet runs its pure-Python code instead (same results, slower shuffles).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("streamlet.native._speedups",
                             ["src/streamlet/native/_speedups.c"],
                             extra_compile_args=["-O2"], optional=True)])
