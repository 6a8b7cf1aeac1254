"""Secret values are masked by their key whatever their length, and by their value
wherever they appear once long enough to be told from ordinary text."""

from __future__ import annotations

import pytest

from common.secrets import MASK, is_secret, remember_command_line, scrub


@pytest.mark.parametrize(
    "key",
    ["ssl.key.pem", "sasl.oauthbearer.config", "sasl.oauthbearer.assertion.private.key.pem",
     "ssl.keystore.password", "my.api.token", "ssl.certificate.pem"],
)  # fmt: skip
def test_librdkafkas_sensitive_properties_and_key_material_are_secret(key: str) -> None:
    assert is_secret(key)
    assert not is_secret("security.protocol")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("sasl.password=x", f"sasl.password={MASK}"),
        ("(ssl.key.pem:x)", f"(ssl.key.pem:{MASK})"),
        ("{'sasl.password': 'x y', 'a': 'x'}", f"{{'sasl.password': '{MASK}', 'a': 'x'}}"),
        ('"sasl.password" = "x"', f'"sasl.password" = "{MASK}"'),
    ],
)
def test_a_short_value_is_masked_next_to_its_key_only(text: str, masked: str) -> None:
    remember_command_line(["-X", "sasl.password=x"])
    assert scrub(text) == masked
    assert scrub("max 5 x 3 (sasl.username, sasl.password: -X)") == (
        "max 5 x 3 (sasl.username, sasl.password: -X)"
    )


def test_a_long_value_is_masked_wherever_it_appears() -> None:
    remember_command_line(["-Xsasl.oauthbearer.config=scope=read principal=Zq8-long"])
    assert scrub("token for scope=read principal=Zq8-long refused") == f"token for {MASK} refused"
