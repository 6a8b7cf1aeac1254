"""Secrets in Kafka client settings, and keeping their values out of every line we print.

A setting is secret when librdkafka flags it sensitive (:data:`SENSITIVE_KEYS`) or its
key names key material (a password, a token, a private key, a PEM). :func:`scrub` masks
them in any text (errors, usage errors, logs, progress, status, tracebacks) in two ways,
since neither is enough alone:

- by key: a value written after a secret key (``sasl.password=…``, ``sasl.password:…``,
  ``'sasl.password': '…'``) is masked whatever its length; this is how settings appear
  in usage errors, reprs and our own messages;
- by value: the values remembered when settings are read, and when the command line is
  scanned before it is parsed (:func:`remember_command_line`), are masked wherever they
  appear, but only from :data:`MIN_MASKED_LENGTH` characters: a shorter value would
  match inside ordinary words and numbers and garble every line (a one-character
  password masked that letter everywhere), while a chance match of a longer one is rare
  and costs one word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_MASKED_LENGTH = 6
"""Remembered values this long or longer are masked wherever they appear."""
SENSITIVE_KEYS = frozenset(
    {
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.password",
        "sasl.username",
        "ssl.ca.pem",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl_key",
    }
)
"""The properties librdkafka itself redacts (flagged ``_RK_SENSITIVE`` in its
``src/rdkafka_conf.c``, master of July 2026)."""
_SECRET_WORDS = ("password", "passphrase", "secret", "token", "private", "credential",
                 "jaas", "pem")  # fmt: skip
_SETTING = re.compile(
    r"""(?P<key>[\w.-]+)(?:\s*=\s*|:|['"]\s*[:=]\s*)"""
    r"""(?:(?P<quote>['"])(?P<quoted>.*?)(?P=quote)|(?P<bare>[^\s'",;)}\]]+))"""
)
"""A setting written in text: ``KEY=VALUE``, ``KEY:VALUE``, ``'KEY': 'VALUE'``, ``"KEY" =
"VALUE"``, the value up to its closing quote or to a space or closing bracket."""
_KEY_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
"""What librdkafka's property names look like."""
_known: set[str] = set()


def is_secret(key: str) -> bool:
    """Whether the setting ``key`` holds a secret."""
    lowered = key.strip().lower()
    return lowered in SENSITIVE_KEYS or any(word in lowered for word in _SECRET_WORDS)


def split_setting(text: str) -> tuple[str, str]:
    """``text`` as a setting's key and value, as a Java properties file line splits: at the
    first ``=``, ``:`` or space (``key = value`` and ``key : value`` too); the value is
    empty when there is no separator."""
    line = text.strip()
    for index, char in enumerate(line):
        if char in "=:" or char.isspace():
            value = line[index + 1 :].lstrip()
            if char.isspace() and value[:1] in ("=", ":"):
                value = value[1:].lstrip()
            return line[:index], value
    return line, ""


def remember_secrets(settings: Mapping[str, str]) -> None:
    """Remember the values of the secret settings among ``settings``, for :func:`scrub`."""
    _known.update(value for key, value in settings.items() if is_secret(key) and value)


def remember_command_line(texts: Iterable[str]) -> None:
    """Remember, for :func:`scrub`, the secrets in ``texts`` (command-line arguments, lines
    of environment variables) before anything parses them, so that no parse error can
    show one: the value of each secret setting (``KEY=VALUE``, ``-XKEY=VALUE``,
    ``KEY:VALUE``, ``KEY VALUE``) and the argument after ``-X`` and a secret key alone
    (``-X sasl.password HUNTER2``)."""
    previous, after_secret_key = "", False
    for text in texts:
        key, value = split_setting(text.removeprefix("-X"))
        if after_secret_key:
            _known.add(text)
        elif is_secret(key) and value:
            _known.add(value)
        given_to_x = previous == "-X" or text.startswith("-X")
        after_secret_key = given_to_x and is_secret(key) and not value
        previous = text


def scrub(text: str) -> str:
    """``text`` with the value of every secret masked with :data:`MASK` (see the module)."""
    long_enough = (secret for secret in _known if len(secret) >= MIN_MASKED_LENGTH)
    for secret in sorted(long_enough, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _SETTING.sub(_masked_if_secret, text)


def scrub_arguments(text: str) -> str:
    """:func:`scrub`, and every remembered value however short where it stands alone
    between spaces, quotes or brackets, as a usage error quotes an argument it cannot
    parse (``Got unexpected extra argument (abc)``)."""
    text = scrub(text)
    for secret in sorted(_known, key=len, reverse=True):
        text = re.sub(rf"""(?<![^\s'"(\[]){re.escape(secret)}(?![^\s'")\],])""", MASK, text)
    return text


def _masked_if_secret(setting: re.Match[str]) -> str:
    if not is_secret(setting["key"]):
        return setting[0]
    value = "quoted" if setting["quoted"] is not None else "bare"
    start, end = setting.start(value) - setting.start(), setting.end(value) - setting.start()
    return f"{setting[0][:start]}{MASK}{setting[0][end:]}"


def shown_setting(text: str) -> str:
    """How ``text``, a setting that could not be parsed, may appear in an error: as it is,
    with its value masked if its key is secret; :data:`MASK` alone when it does not start
    with a setting's name (lowercase and dotted, as librdkafka's are), since it may then be
    the rest of a secret, such as a line of a PEM key."""
    key, value = split_setting(text)
    if not _KEY_NAME.fullmatch(key):
        return MASK
    if not (is_secret(key) and value):
        return scrub(text.strip())
    written = text.strip()
    return f"{written[: len(written) - len(value)]}{MASK}"


def redacted(settings: Mapping[str, str]) -> dict[str, str]:
    """``settings`` with the values of secret keys replaced by :data:`MASK`."""
    return {key: MASK if is_secret(key) else value for key, value in settings.items()}
