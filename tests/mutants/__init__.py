"""Curated mutants for tools/mutation_check.py: one list ``MUTANTS`` per area, in ``<area>.py``.

A mutant breaks one paper concept with the smallest edit that does so, and names the fast tests that
pin the concept. Add one whenever a concept is added; keep ``old`` short but unique in its file.
"""
from dataclasses import dataclass, field
from typing import List

__all__ = ["Mutant"]


@dataclass(frozen=True)
class Mutant:
    name: str  # unique, prefixed by its area (e.g. "mnc_", "scnet_")
    concept: str  # what the edit breaks, in the paper's words
    path: str  # file under projects/cascades/, relative to the repository root
    old: str  # a snippet that occurs exactly once in the file
    new: str  # its replacement
    tests: List[str] = field(default_factory=list)  # pytest selections that must fail (node ids or files)
