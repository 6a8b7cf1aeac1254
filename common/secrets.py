"""Secrets in Kafka client settings, and keeping their values out of every line we print.

A setting is secret when its key names one: ``sasl.password``,
``ssl.key.password``, ``ssl.keystore.password``, ``sasl.oauthbearer.client.secret``,
or any key containing ``password`` or ``secret``. Their values are remembered when
settings are read, and :func:`scrub` replaces them in any text: errors, logs,
progress, status.
"""

from __future__ import annotations

from collections.abc import Mapping

MASK = "***"
_SECRET_WORDS = ("password", "secret")
_known: set[str] = set()


def is_secret(key: str) -> bool:
    """Whether the setting ``key`` holds a secret."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def remember_secrets(settings: Mapping[str, str]) -> None:
    """Remember the values of the secret settings among ``settings``, for :func:`scrub`."""
    _known.update(value for key, value in settings.items() if is_secret(key) and value)


def scrub(text: str) -> str:
    """``text`` with every remembered secret value replaced by :data:`MASK`."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redacted(settings: Mapping[str, str]) -> dict[str, str]:
    """``settings`` with the values of secret keys replaced by :data:`MASK`."""
    return {key: MASK if is_secret(key) else value for key, value in settings.items()}
