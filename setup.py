"""Ships `mappings/` and `profiles/` inside the wheel.

They live at the repository root, where they are edited and reviewed as data; a wheel installs nothing
outside its packages, so the build copies both into `server/_data/` (see `server/data_files.py`)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_DIRECTORIES = ("mappings", "profiles")


class BuildWithDataFiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        root = Path(__file__).resolve().parent
        for name in DATA_DIRECTORIES:
            shutil.copytree(root / name, Path(self.build_lib) / "server" / "_data" / name, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithDataFiles})
