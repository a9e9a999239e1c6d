"""The `Mirror` a warm function keeps between events, so tokens and connections
are reused. Built again when the settings it was made from change (the config
is read again from SSM once its cache expires), so a new config applies within
minutes without a cold start (the one it replaces is closed: its connections
with it). Nothing an event carries is kept in it."""

from __future__ import annotations

from ..mirror import Mirror
from ..settings import MirrorSettings
from ..sync.config import MirrorConfig
from .common import read_config

_mirror: Mirror | None = None


def mirror_settings(config: MirrorConfig | None) -> MirrorSettings:
    """The settings a Mirror gets: the environment's, with the config merged in."""
    settings = MirrorSettings.from_env()
    return settings.merged_with(config) if config else settings


def get_mirror() -> Mirror:
    """The warm Mirror, for the current settings and config."""
    global _mirror
    settings = mirror_settings(read_config())
    if _mirror is None or _mirror.settings != settings:
        if _mirror is not None:  # invocations run one at a time: nothing uses it any more
            _mirror.close()
        _mirror = Mirror(settings)
    return _mirror
