"""This folder is the package ``edge.reference_data`` once installed (see pyproject.toml).

It holds data, no code: the reference DBC, its collection rules and the UDS maps. This file is
what lets an editable install import the folder under that name; edge reads the files through
``edge.reference``, which works the same from a checkout and from an installed wheel.
"""

__all__: list[str] = []
