"""Build hook: generate the ``caloflow.v1`` message classes from the repository's ``proto/`` into the package.

Metadata lives in ``pyproject.toml``; this file only adds the protoc step to ``build_py`` (wheel and editable
builds), so the stubs are built from the one ``.proto`` and never committed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _protogen() -> ModuleType:
    """``caloflow_client/_protogen.py`` loaded by path (the package itself needs numpy, absent at build time)."""
    spec = importlib.util.spec_from_file_location("_caloflow_protogen", HERE / "caloflow_client" / "_protogen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        protogen = _protogen()
        root = protogen.find_proto_root(HERE)
        if root is None:
            raise FileNotFoundError(f"no proto/{protogen.PROTO_FILE} above {HERE}: build from a repository checkout")
        protogen.ensure(root, HERE / "caloflow_client" / "_proto")  # the source tree (editable installs use it)
        super().run()  # copies the package, stubs included, into build_lib


setup(cmdclass={"build_py": BuildPyWithStubs})
