"""mkdocs hook: list a package's modules on an API page at build time.

An API page names its package once, with a marker such as::

    <!-- api-modules pipeline.crm docstrings 3 -->

and this hook replaces the marker with one mkdocstrings block per module found in the
package's folder (``mode`` ``docstrings``: the module docstring only; ``full``: every public
member too; ``modules``: like ``full`` but skipping sub-packages, which have pages of their
own), headings at the given level. Listing the folder at build time, instead of writing the
module names into the page, keeps the pages right when a module is added, renamed or removed:
a hand-written list would break the strict build the next time someone moved a file.
Listed in ``mkdocs.yml`` under ``hooks``; not part of the package.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_MARKER = re.compile(r"<!-- api-modules (?P<package>[\w.]+) (?P<mode>docstrings|full|modules)"
                     r" (?P<level>[1-6]) -->")
_ROOT = Path(__file__).resolve().parents[1]


def modules_of(package: str, *, packages: bool = True) -> list[str]:
    """Dotted names of the public modules (and, if asked, sub-packages) of ``package``."""
    folder = _ROOT.joinpath(*package.split("."))
    names = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py":
            names.append(f"{package}.{path.stem}")
        elif packages and (path / "__init__.py").is_file():
            names.append(f"{package}.{path.name}")
    return names


def _blocks(match: re.Match[str]) -> str:
    mode, level = match["mode"], match["level"]
    members = "      members: false\n" if mode == "docstrings" else ""
    return "\n".join(
        f"::: {name}\n    options:\n{members}      heading_level: {level}\n"
        for name in modules_of(match["package"], packages=mode != "modules"))


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Expand every ``api-modules`` marker of the page (see the module docstring)."""
    return _MARKER.sub(_blocks, markdown)
