"""Map the top-level folders into the one `gossamer` import namespace.

`gossamer/` is `gossamer`, `certs/` is `gossamer.certs`, and so on; every subpackage
below each folder is found automatically, so none can be left out of the wheel.
"""

from setuptools import find_packages, setup

ROOTS = {
    "gossamer": "gossamer",
    "gossamer.certs": "certs",
    "gossamer.discovery": "discovery",
    "gossamer.control": "control",
    "gossamer.proxy": "proxy",
}


def _packages() -> list[str]:
    found: list[str] = []
    for name, folder in ROOTS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(folder)]
    return found


setup(
    packages=_packages(),
    package_dir=ROOTS,
    package_data={"": ["*.html", "*.js", "*.css", "*.json", "*.yaml", "py.typed"]},
    include_package_data=True,
)
