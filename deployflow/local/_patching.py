"""Reversible attribute patches on moto's classes and modules: the mechanism every local-stack seam uses.

moto is pinned exactly (requirements-local.txt) because these patches replace its internals. A patch refuses to apply
when the attribute it replaces is gone, so a moto upgrade that moves a seam fails loudly at install time, and the
canary tests (tests/canary/) fail when the behaviour behind a seam changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self

_MISSING = object()
_installed_lock = threading.Lock()
_installed: set[str] = set()


class SeamError(RuntimeError):
    """A seam cannot be installed: moto changed where it patches, or the seam is already installed."""


@dataclass
class AttributePatch:
    """Replace ``owner.name`` with ``replacement`` until reverted; restores exactly what was there before."""

    owner: Any
    name: str
    replacement: Any
    _saved: Any = field(default=_MISSING, init=False, repr=False)

    def apply(self) -> None:
        if not hasattr(self.owner, self.name):
            raise SeamError(
                f"{getattr(self.owner, '__name__', self.owner)!r} has no attribute {self.name!r}: "
                "moto changed the seam this local stack patches (moto is pinned in requirements-local.txt)"
            )
        # Save the owner's own entry (not an inherited one) so that reverting does not leave a copy on a subclass.
        self._saved = vars(self.owner).get(self.name, _MISSING)
        setattr(self.owner, self.name, self.replacement)

    def revert(self) -> None:
        if self._saved is _MISSING:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self._saved)
        self._saved = _MISSING


@dataclass
class AttributeAddition:
    """Add ``owner.name`` (an operation moto lacks) until reverted. Refuses when moto already has it: the seam would
    hide moto's own implementation, so an upgrade that adds it fails loudly and the seam can go."""

    owner: Any
    name: str
    value: Any

    def apply(self) -> None:
        if hasattr(self.owner, self.name):
            raise SeamError(
                f"{getattr(self.owner, '__name__', self.owner)!r} now has {self.name!r}: moto implements what this "
                "local stack adds (moto is pinned in requirements-local.txt); re-read the seam before upgrading"
            )
        setattr(self.owner, self.name, self.value)

    def revert(self) -> None:
        if self.name in vars(self.owner):
            delattr(self.owner, self.name)


class PatchSet:
    """A named group of patches applied and reverted together; one group of a name may be installed at a time."""

    def __init__(self, name: str, patches: Iterable[AttributePatch | AttributeAddition]) -> None:
        self.name = name
        self._patches = list(patches)
        self._applied: list[AttributePatch | AttributeAddition] = []

    @property
    def installed(self) -> bool:
        return bool(self._applied)

    def apply(self) -> None:
        with _installed_lock:
            if self.name in _installed:
                raise SeamError(f"the {self.name} seam is already installed in this process (one at a time)")
            _installed.add(self.name)
        try:
            for patch in self._patches:
                patch.apply()
                self._applied.append(patch)
        except BaseException:
            self.revert()
            raise

    def revert(self) -> None:
        while self._applied:
            self._applied.pop().revert()
        with _installed_lock:
            _installed.discard(self.name)


class Seam:
    """Base of the local stack's seams: ``install()`` builds and applies a PatchSet, ``uninstall()`` reverts it;
    a seam is also a context manager."""

    _patches: PatchSet | None = None

    def install(self) -> None:
        raise NotImplementedError

    def uninstall(self) -> None:
        self._revert_patches()

    def _apply_patches(self, patches: PatchSet) -> None:
        patches.apply()
        self._patches = patches

    def _revert_patches(self) -> None:
        if self._patches is not None:
            self._patches.revert()
            self._patches = None

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()
