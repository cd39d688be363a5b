"""`podium keys rotate`: a new master key becomes active and every secret is re-encrypted under it.

With a key file (the default, DIR/keys/master-key.json) a fresh key is added and made active; the old keys
stay in the file so that anything sealed under them (by a service still running with the old active key,
the router's inference tables) keeps opening. Re-encrypted at once: the secrets store, and the provider keys
stored in endpoint specs (a running control plane re-seals those it holds when it next starts).
With PODIUM_MASTER_KEY, put the new key first (`new:<b64>,old:<b64>`), restart, then run this command to
re-encrypt under it.
"""

from __future__ import annotations

from pathlib import Path

from services.common.master_keys import load_cipher
from services.common.secret_box import reseal
from services.control_plane.crypto import KeyRing, add_key, ensure_key_file
from services.control_plane.identity_store import IdentityStore
from services.control_plane.secrets_store import reencrypt_secrets
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.store import EndpointStore, open_engine


def rotate(data_dir: Path) -> dict:
    """Rotates (key file) and re-encrypts; returns the active key id and how many secrets changed."""
    settings = ControlPlaneSettings(data_dir=data_dir)
    master_key = settings.master_key.get_secret_value()
    if not master_key:
        key_file = settings.resolved_key_file()
        ensure_key_file(key_file)
        add_key(key_file)
    keyring = KeyRing.from_settings(master_key, settings.resolved_key_file())
    cipher = load_cipher(master_key, settings.resolved_key_file())
    engine = open_engine(settings.resolved_database_url())
    try:
        changed = reencrypt_secrets(IdentityStore(engine), keyring)
        endpoints = EndpointStore(engine)
        resealed = 0
        for endpoint in endpoints.load_all():   # provider keys stored in endpoint specs
            moved = reseal(endpoint, cipher)
            if moved is not endpoint:
                endpoints.update(moved)
                resealed += 1
    finally:
        engine.dispose()
    return {"active_key_id": keyring.active_key_id, "reencrypted_secrets": changed, "resealed_endpoints": resealed}
