"""The secret box: AES-GCM sealing bound to a row, key ids, rotation, clear rows, the
development key, and the settings that carry the keys."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr, ValidationError

from shared.secretbox import (
    DEV_KEY_ID,
    SecretBox,
    SecretKeyError,
    is_sealed,
    key_id,
    key_id_of,
    new_key,
    parse_key,
    require_secret_key,
    secret_box,
)
from shared.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def box(*keys: str) -> SecretBox:
    current, *previous = (parse_key(k) for k in keys)
    return SecretBox(current, previous)


def test_sealed_value_opens_and_hides_the_secret():
    key = new_key()
    sealed = box(key).seal(SECRET, "alert_subscriptions.secret:sub_1")
    assert is_sealed(sealed)
    assert SECRET not in sealed
    assert SECRET.removeprefix("whsec_") not in sealed
    prefix, version, kid, _ = sealed.split(":", 3)
    assert (prefix, version, kid) == ("qcenc", "v1", key_id(parse_key(key)))
    assert len(kid) == 8
    assert box(key).open(sealed, "alert_subscriptions.secret:sub_1") == SECRET
    # A random nonce per seal: the same secret never seals to the same text.
    assert box(key).seal(SECRET, "x") != box(key).seal(SECRET, "x")


def test_a_sealed_value_is_bound_to_its_row():
    key = new_key()
    sealed = box(key).seal(SECRET, "alert_subscriptions.secret:sub_1")
    with pytest.raises(SecretKeyError, match="does not open"):
        box(key).open(sealed, "alert_subscriptions.secret:sub_2")


def test_a_tampered_value_or_header_does_not_open():
    key = new_key()
    sealed = box(key).seal(SECRET, "c")
    body = sealed.rsplit(":", 1)[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(SecretKeyError):
        box(key).open(sealed.rsplit(":", 1)[0] + ":" + flipped, "c")
    # Relabelled as the development key (which every box holds): the tag fails.
    relabelled = sealed.replace(f":{key_id(parse_key(key))}:", f":{DEV_KEY_ID}:")
    with pytest.raises(SecretKeyError):
        box(key).open(relabelled, "c")
    with pytest.raises(SecretKeyError, match="format"):
        box(key).open("qcenc:v9:abcd:xyz", "c")


def test_previous_keys_open_old_rows_and_unknown_keys_are_named():
    old, new = new_key(), new_key()
    sealed = box(old).seal(SECRET, "c")
    rotated = box(new, old)
    assert rotated.open(sealed, "c") == SECRET
    assert not rotated.is_current(sealed)
    assert rotated.is_current(rotated.seal(SECRET, "c"))
    with pytest.raises(SecretKeyError, match=key_id(parse_key(old))):
        box(new).open(sealed, "c")


def test_clear_values_pass_and_the_development_key_always_opens():
    key = new_key()
    assert box(key).open(SECRET, "c") == SECRET
    assert key_id_of(SECRET) is None
    dev = secret_box(Settings())
    assert dev.is_dev
    sealed = dev.seal(SECRET, "c")
    assert key_id_of(sealed) == DEV_KEY_ID
    assert box(key).open(sealed, "c") == SECRET
    assert not box(key).truly_sealed(sealed)
    assert box(key).truly_sealed(box(key).seal(SECRET, "c"))


@pytest.mark.parametrize("bad", ["short", "dev", base64.urlsafe_b64encode(b"x" * 31).decode()])
def test_malformed_keys_fail_the_settings_without_echoing_them(bad):
    bad += "-my-own-secret-text"
    with pytest.raises(ValidationError) as info:
        Settings(secret_key=bad)
    assert "32 random bytes" in str(info.value)
    assert bad not in str(info.value)
    with pytest.raises(ValidationError):
        Settings(secret_key=new_key(), secret_key_previous=f"{new_key()},{bad}")


def test_settings_carry_the_keys(monkeypatch):
    current, old1, old2 = new_key(), new_key(), new_key()
    monkeypatch.setenv("QCPULSE_SECRET_KEY", current)
    monkeypatch.setenv("QCPULSE_SECRET_KEY_PREVIOUS", f"{old1}, {old2}")
    settings = Settings()
    built = secret_box(settings)
    assert built.current_id == key_id(parse_key(current))
    assert built.open(box(old2).seal(SECRET, "c"), "c") == SECRET
    assert secret_box(settings) is built  # built once per key set
    require_secret_key(settings)


def test_a_key_is_required_unless_the_development_key_is_allowed():
    with pytest.raises(SecretKeyError, match="QCPULSE_SECRET_KEY is not set"):
        require_secret_key(Settings())
    with pytest.raises(SecretKeyError):
        require_secret_key(Settings(secret_key=SecretStr("")))
    require_secret_key(Settings(insecure_dev_key=True))
