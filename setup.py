"""The two build steps pyproject.toml cannot express; the project's metadata and package data live there.

- The top-level ``templates/`` and ``static/`` folders are installed as the packages ``idp.templates`` and
  ``idp.static``: pyproject.toml's package discovery cannot add packages that live outside ``idp/``. They are
  regular packages (an ``__init__.py`` each) because setuptools' editable install does not import a namespace
  package mapped to another folder (pypa/setuptools#4943).
- The wheel carries the compiled catalogues (``.mo``) instead of their sources, so an installed Hoviyat never
  writes into its site-packages; a source checkout compiles them when it starts (``idp.i18n``).
"""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

#: Package name -> the repository folder it is installed from.
MAPPED_FOLDERS = {"idp.templates": "templates", "idp.static": "static"}
CATALOGUES = "idp/translations/*/LC_MESSAGES/messages.po"


def mapped_packages(package: str, folder: str) -> list[str]:
    """``folder`` as ``package``, and its sub-folders as sub-packages."""
    return [package, *(f"{package}.{name}" for name in find_namespace_packages(where=folder))]


class BuildWithCompiledCatalogues(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # the checkout's own files are used, and idp.i18n compiles them in place
        for po_path in sorted(Path().glob(CATALOGUES)):
            mo_path = Path(self.build_lib, po_path.with_suffix(".mo"))
            mo_path.parent.mkdir(parents=True, exist_ok=True)
            with po_path.open("rb") as po_file:
                catalogue = read_po(po_file)
            with mo_path.open("wb") as mo_file:
                write_mo(mo_file, catalogue)


setup(
    packages=[
        *find_namespace_packages(include=["idp*", "clients*"]),
        *(name for package, folder in MAPPED_FOLDERS.items() for name in mapped_packages(package, folder)),
    ],
    package_dir=MAPPED_FOLDERS,
    cmdclass={"build_py": BuildWithCompiledCatalogues},
)
