"""Conversions between transformer_lib's modules and other implementations, in one place.

Every converter is driven by an explicit name table (which of our parameters is which of
theirs) and builds its result on the source's device and dtype, so round trips are exact.
The classmethods ``from_torch`` / ``to_torch`` of the modules are the public entry points;
they call into this module.
"""

from __future__ import annotations
