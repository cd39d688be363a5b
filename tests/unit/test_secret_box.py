"""Secrets at rest: AES-256-GCM tokens, the master key file, and sealing (and resealing) `*_plaintext` fields."""

from __future__ import annotations

import base64
import os

import pytest

from services.common.master_keys import add_key, ensure_key_file, load_cipher, load_keys
from services.common.secret_box import (
    Cipher, SecretError, key_id_of, parse_reference, public_view, reseal, seal_plaintext,
)

KEY = bytes(range(32))


def test_round_trip_and_associated_data():
    cipher = Cipher.from_key(KEY)
    token = cipher.encrypt(b"sk-live-123", b"openai_api_key")
    assert token.startswith("pdm1.") and b"sk-live-123" not in token.encode()
    assert cipher.encrypt(b"sk-live-123", b"openai_api_key") != token  # a fresh nonce every time
    assert cipher.decrypt(token, b"openai_api_key") == b"sk-live-123"
    with pytest.raises(SecretError, match="does not open"):
        cipher.decrypt(token, b"another_field")  # a ciphertext moved to another field does not open


def test_tampering_and_other_keys_are_refused():
    cipher = Cipher.from_key(KEY)
    version, key_id, payload = cipher.encrypt(b"secret").split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 1
    with pytest.raises(SecretError, match="tampered"):
        cipher.decrypt(f"{version}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode()}")
    with pytest.raises(SecretError, match="no master key with id"):
        Cipher.from_key(bytes(32)).decrypt(cipher.encrypt(b"secret"))
    with pytest.raises(SecretError, match="not a Podium ciphertext"):
        cipher.decrypt("plain text")


def test_a_rotated_keyring_opens_old_tokens():
    token = Cipher.from_key(KEY).encrypt(b"secret")
    new_key = bytes(32)
    keyring = Cipher({key_id_of(KEY): KEY, key_id_of(new_key): new_key}, key_id_of(new_key))
    assert keyring.decrypt(token) == b"secret"
    assert keyring.encrypt(b"x").split(".")[1] == key_id_of(new_key)


def test_key_file_is_created_0600_once_and_reused(tmp_path):
    path = tmp_path / "keys" / "master-key.json"
    assert ensure_key_file(path) and not ensure_key_file(path)
    keys, active = load_keys("", path)
    assert len(keys[active]) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_keys("", path) == (keys, active)
    assert [p.name for p in path.parent.iterdir()] == ["master-key.json"]  # nothing left aside
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="readable by other users"):
        load_keys("", path)


def test_master_key_from_the_environment(tmp_path):
    keys, active = load_keys(base64.b64encode(KEY).decode(), tmp_path / "master-key.json")
    assert keys == {active: KEY}
    assert not (tmp_path / "master-key.json").exists()
    with pytest.raises(SecretError, match="base64"):
        load_keys("too-short!", tmp_path / "master-key.json")
    with pytest.raises(SecretError, match="32 bytes"):
        load_keys(base64.b64encode(b"short").decode(), tmp_path / "master-key.json")


def test_reseal_moves_every_ciphertext_to_the_active_key(tmp_path):
    path = tmp_path / "master-key.json"
    old = load_cipher("", path)
    spec = seal_plaintext({"openai_config": {"openai_api_key_plaintext": "sk-1"}, "other": [1]}, old)
    assert reseal(spec, old) is spec                       # already under the active key: untouched
    add_key(path)
    new = load_cipher("", path)
    moved = reseal(spec, new)
    token = moved["openai_config"]["openai_api_key_ciphertext"]
    assert token.split(".")[1] == new.current_key_id != old.current_key_id
    assert new.decrypt(token, b"openai_api_key") == b"sk-1" and moved["other"] == [1]


def test_seal_and_public_view():
    cipher = Cipher.from_key(KEY)
    spec = {"external_model": {"openai_config": {"openai_api_key_plaintext": "sk-1", "openai_api_base": "u"},
                               "custom": [{"bearer_token_auth": {"token_plaintext": "t-2"}}]}}
    sealed = seal_plaintext(spec, cipher)
    openai_config = sealed["external_model"]["openai_config"]
    assert set(openai_config) == {"openai_api_key_ciphertext", "openai_api_base"}
    assert cipher.decrypt(openai_config["openai_api_key_ciphertext"], b"openai_api_key") == b"sk-1"
    assert "t-2" not in str(sealed) and "sk-1" not in str(sealed)
    assert public_view(sealed) == {"external_model": {"openai_config": {"openai_api_base": "u"},
                                                      "custom": [{"bearer_token_auth": {}}]}}
    with pytest.raises(SecretError, match="no master key"):
        seal_plaintext(spec, None)


@pytest.mark.parametrize("text, want", [
    ("{{secrets/scope/key}}", ("scope", "key")),
    ("{{ secrets/my-scope/openai.key }}", ("my-scope", "openai.key")),
    ("{{secrets/scope}}", None),
    ("sk-raw", None),
    ("{{secrets/a/b/c}}", None),
])
def test_parse_reference(text, want):
    assert parse_reference(text) == want

