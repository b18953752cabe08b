"""Package layout: the repository's top-level folders are the subpackages of `accel`.

`cli/` is `accel.cli`, `recipes/d2f/` is `accel.recipes.d2f`, and so on. Every folder under the
top-level package folders is found here: a folder with an `__init__.py` is a package, any other
folder ships its files as package data (configs, the built-in teachers, DeepSpeed JSON). A new
recipe or data folder therefore lands in the wheel without touching packaging.
"""
from pathlib import Path

from setuptools import setup

# Every top-level folder with an __init__.py except the tests: cli, core, data, decoding, ...
TOP_LEVEL = sorted(p.parent.name for p in Path(".").glob("*/__init__.py") if p.parent.name != "tests")
SKIP = ("__pycache__", ".work", ".egg-info")

packages, package_dir, package_data = [], {}, {}
for top in TOP_LEVEL:
    for folder in [Path(top), *sorted(p for p in Path(top).rglob("*") if p.is_dir())]:
        if any(part.startswith(".") or part.endswith(SKIP) for part in folder.parts):
            continue
        files = [f for f in folder.iterdir() if f.is_file()]
        if not files:
            continue
        name = "accel." + ".".join(folder.parts)
        packages.append(name)
        package_dir[name] = folder.as_posix()
        if not (folder / "__init__.py").exists() or any(f.suffix not in (".py", ".pyc") for f in files):
            package_data[name] = [f.name for f in files if f.suffix not in (".py", ".pyc")]

setup(packages=packages, package_dir=package_dir, package_data=package_data)
