"""Turn the Sphinx roles in fleetcare's docstrings into links on the docs site.

The code's docstrings are Google style (``Args:``, ``Raises:``) but cross-reference other
objects the Sphinx way (``:func:`land_prepared```, ``:mod:`pipeline.ingest```), because that
reads well in an editor and in ``help()``. mkdocstrings does not know those roles and would
print them verbatim, so this griffe extension rewrites each one, before the docstring is
parsed, into an *optional* autorefs link: a link when the target is rendered somewhere on the
site, plain code otherwise. Optional links never warn, so ``mkdocs build --strict`` stays
clean when a docstring names a private helper or a third-party object.

Names are resolved the way a reader would: relative to the object that carries the
docstring (its module's imports, its class, its parents), then as an absolute dotted path.
Listed in ``mkdocs.yml`` under the python handler's ``extensions``; not part of the package.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|exc|obj|const):`(~?)([^`]+)`")


def _full_name(obj: griffe.Object, target: str) -> str:
    """The dotted path ``target`` names as seen from ``obj`` (``target`` itself if unknown)."""
    head, _, rest = target.partition(".")
    try:
        base = obj.resolve(head)
    except (griffe.NameResolutionError, ValueError, AttributeError, KeyError):
        return target
    return f"{base}.{rest}" if rest else base


def _rewrite(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        identifier = html.escape(_full_name(obj, target), quote=True)
        code = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    return _ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader,
                  **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj`` (aliases are skipped: their target is visited)."""
        if obj.is_alias or obj.docstring is None or ":" not in obj.docstring.value:
            return
        obj.docstring.value = _rewrite(obj, obj.docstring.value)
