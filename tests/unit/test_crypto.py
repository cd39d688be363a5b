"""Encryption at rest: AES-256-GCM with key ids, bound to its context; key files; rotation re-encrypts."""

from __future__ import annotations

import base64
import stat

import pytest

from podium.keys import rotate
from services.control_plane.crypto import KeyRing, KeyUnavailable, ensure_key_file, parse_master_key, read_key_file
from services.control_plane.secrets_store import SecretsService
from tests.support.identity import ADMIN_TOKEN, INTERNAL_TOKEN, start_identity

KEY_A, KEY_B = b"\xaa" * 32, b"\xbb" * 32


def test_ciphertexts_name_their_key_and_bind_their_context():
    ring = KeyRing({"a": KEY_A}, "a")
    sealed = ring.encrypt(b"sk-live-123", "secret:s/k")
    assert sealed.startswith("pk1.a.") and b"sk-live-123" not in base64.urlsafe_b64decode(sealed.split(".")[2])
    assert ring.encrypt(b"sk-live-123", "secret:s/k") != sealed          # a fresh nonce every time
    assert ring.decrypt(sealed, "secret:s/k") == b"sk-live-123"
    with pytest.raises(KeyUnavailable):
        ring.decrypt(sealed, "secret:s/other")                        # moved to another row: refused
    with pytest.raises(KeyUnavailable):
        KeyRing({"b": KEY_B}, "b").decrypt(sealed, "secret:s/k")      # key not available
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(KeyUnavailable):
        ring.decrypt(tampered, "secret:s/k")


@pytest.mark.parametrize("value, keys, active", [
    (base64.b64encode(KEY_A).decode(), 1, "env-"),
    (f"new:{base64.b64encode(KEY_B).decode()},old:{base64.b64encode(KEY_A).decode()}", 2, "new"),
])
def test_master_key_from_the_environment(value, keys, active):
    parsed, active_id = parse_master_key(value)
    assert len(parsed) == keys and active_id.startswith(active)


@pytest.mark.parametrize("value", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_bad_master_keys_are_refused_without_echoing_them(value):
    with pytest.raises(KeyUnavailable) as error:
        parse_master_key(value)
    assert not value or value not in error.value.message


def test_key_file_is_private(tmp_path):
    path = tmp_path / "keys" / "master-key.json"
    assert ensure_key_file(path) and not ensure_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    keys, active = read_key_file(path)
    assert list(keys) == [active] and len(keys[active]) == 32


async def test_rotation_re_encrypts_every_secret_and_a_running_ring_follows(tmp_path, monkeypatch):
    monkeypatch.delenv("PODIUM_MASTER_KEY", raising=False)
    monkeypatch.delenv("PODIUM_DATABASE_URL", raising=False)
    monkeypatch.delenv("PODIUM_KEY_FILE", raising=False)
    key_file = tmp_path / "keys" / "master-key.json"
    database_url = f"sqlite:///{tmp_path / 'podium.db'}"
    ring = KeyRing.from_settings("", key_file)
    ident = await start_identity(database_url, keyring=ring)
    secrets = SecretsService(ident.store, ident.identity, ring)
    await secrets.create_scope(ADMIN_TOKEN, {"scope": "s"})
    for key in ("one", "two"):
        await secrets.put(ADMIN_TOKEN, {"scope": "s", "key": key, "string_value": f"value-{key}"})
    old_key = ring.active_key_id

    report = rotate(tmp_path)
    assert report["reencrypted_secrets"] == 2 and report["active_key_id"] != old_key
    stored = {kid for _, _, value in ident.store.all_secret_values() for kid in [KeyRing.key_id_of(value)]}
    assert stored == {report["active_key_id"]}
    # The running ring had never seen the new key: it reads it on demand and encrypts under it from now on.
    assert await secrets.resolve(INTERNAL_TOKEN, ["{{secrets/s/one}}:{{ secrets/s/two }}"], "ep") == [
        "value-one:value-two"]
    await secrets.put(ADMIN_TOKEN, {"scope": "s", "key": "three", "string_value": "value-three"})
    assert KeyRing.key_id_of(ident.store.secret_value("s", "three")) == report["active_key_id"]
    assert rotate(tmp_path)["reencrypted_secrets"] == 3
