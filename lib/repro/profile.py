"""Run profiles: `smoke` (seconds, for tests), `default` (the small-scale reproduction), `full` (GPU scale).

A notebook's parameters cell holds literals only (``profile = None``); its setup cell calls
:func:`resolve` and :func:`expand`, so papermill (``-p profile full``), nbval (``REPRO_PROFILE=smoke``)
and Jupyter's Run All (the ``default``) all reach the same code.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any

PROFILES = ("smoke", "default", "full")


class ProfileError(ValueError):
    """A profile or profile override that does not exist."""


def check(profile: str) -> str:
    """``profile`` itself when it names a run profile (smoke, default, full); ``ProfileError`` else."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return profile


def resolve(profile: str | None = None) -> str:
    """The profile to run: the given one, else ``$REPRO_PROFILE``, else ``default``."""
    if profile is None:
        profile = os.environ.get("REPRO_PROFILE") or "default"
    return check(profile)


def expand(profile: str | None, table: dict[str, dict[str, Any]], **overrides: Any) -> MappingProxyType:
    """Expand ``profile`` into its sizes from ``table``; overrides that are not ``None`` win.

    ``table`` maps every profile name to a dict of the same keys. An override naming a key that the
    table does not have is an error listing the valid keys.
    """
    profile = resolve(profile)
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ProfileError(f"profile table lacks {', '.join(missing)}")
    keys = set(table[PROFILES[0]])
    for p in PROFILES[1:]:
        if set(table[p]) != keys:
            raise ProfileError(f"profile {p!r} has keys {sorted(table[p])}, expected {sorted(keys)}")
    unknown = sorted(k for k in overrides if k not in keys)
    if unknown:
        raise ProfileError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(keys))}")
    sizes = dict(table[profile])
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    sizes["profile"] = profile
    return MappingProxyType(sizes)
