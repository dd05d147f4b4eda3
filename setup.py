"""Map the design card's top-level folders under the single ``wattledger`` import package.

The repository keeps ``agent/``, ``collector/``, ``migrations/`` and ``cli/`` at its root, but
installing them as top-level modules would squat generic names in site-packages. Each folder is
installed as a subpackage instead (``agent/`` becomes ``wattledger.agent``), and editable installs
keep pointing at the folders.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "wattledger": "wattledger",
    "wattledger.agent": "agent",
    "wattledger.collector": "collector",
    "wattledger.migrations": "migrations",
    "wattledger.cli": "cli",
}


def mapped_packages() -> list[str]:
    packages = []
    for package, folder in FOLDERS.items():
        packages.append(package)
        packages.extend(f"{package}.{sub}" for sub in find_packages(folder))
    return packages


setup(packages=mapped_packages(), package_dir=FOLDERS)
