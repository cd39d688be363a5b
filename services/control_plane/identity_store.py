"""Durable identities, credentials and secrets, in the control plane's database (SQLite or PostgreSQL).

Blocking calls: the cores run them in a worker thread. Stored are principals (users, service principals
and groups, each a SCIM document), group memberships, credential records (salted digests only, never a
token), secrets (AES-256-GCM ciphertexts only; see crypto.py) and secret scopes' ACLs.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.errors import AlreadyExists

metadata = sa.MetaData()

principals_table = sa.Table(
    "podium_principals", metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),      # user | service_principal | group
    sa.Column("name", sa.String(255), nullable=False),     # userName | applicationId | displayName
    sa.Column("document", sa.Text, nullable=False),
    sa.UniqueConstraint("kind", "name", name="podium_principals_kind_name"),
)

members_table = sa.Table(
    "podium_group_members", metadata,
    sa.Column("group_id", sa.String(20), primary_key=True),
    sa.Column("member_id", sa.String(20), primary_key=True),
)

credentials_table = sa.Table(
    "podium_credentials", metadata,
    sa.Column("token_id", sa.String(16), primary_key=True),
    sa.Column("kind", sa.String(12), nullable=False),       # pat | sp_secret
    sa.Column("owner_id", sa.String(20), nullable=False, index=True),
    sa.Column("created_by_id", sa.String(20), nullable=False),
    sa.Column("salt", sa.String(32), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("expiry_time", sa.BigInteger, nullable=False),  # epoch ms; -1 = never
)

scopes_table = sa.Table(
    "podium_secret_scopes", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("owner_id", sa.String(20), nullable=False),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
)

secrets_table = sa.Table(
    "podium_secrets", metadata,
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),               # ciphertext: pk1.<kid>.<...>
    sa.Column("last_updated_timestamp", sa.BigInteger, nullable=False),
)

secret_acls_table = sa.Table(
    "podium_secret_acls", metadata,
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("principal_id", sa.String(20), primary_key=True),
    sa.Column("permission", sa.String(12), nullable=False),     # READ | WRITE | MANAGE
)

CREDENTIAL_FIELDS = ("token_id", "kind", "owner_id", "created_by_id", "salt", "digest", "comment",
                     "creation_time", "expiry_time")


class IdentityStore:
    def __init__(self, engine: sa.Engine):
        self._engine = engine
        metadata.create_all(engine)

    # ---- principals and memberships ----

    def load(self) -> tuple[list[dict], list[tuple[str, str]], list[dict]]:
        """Every principal (its document plus id, kind, name), membership and credential record."""
        with self._engine.connect() as conn:
            principals = [{**orjson.loads(r.document), "id": r.id, "kind": r.kind, "name": r.name}
                          for r in conn.execute(sa.select(principals_table))]
            members = [(r.group_id, r.member_id) for r in conn.execute(sa.select(members_table))]
            records = [_row(r) for r in conn.execute(sa.select(credentials_table))]
        return principals, members, records

    def insert_principal(self, principal_id: str, kind: str, name: str, document: dict,
                         members: list[str] = ()) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(principals_table.insert().values(
                    id=principal_id, kind=kind, name=name, document=orjson.dumps(document).decode()))
                if members:
                    conn.execute(members_table.insert(), [{"group_id": principal_id, "member_id": m}
                                                          for m in members])
        except IntegrityError as exc:
            raise AlreadyExists(f"A {kind.replace('_', ' ')} named '{name}' already exists") from exc

    def update_principal(self, principal_id: str, kind: str, name: str, document: dict,
                         members: list[str] | None = None) -> None:
        """Replaces the document (and, for a group given `members`, its member list) in one transaction."""
        try:
            with self._engine.begin() as conn:
                conn.execute(principals_table.update().where(principals_table.c.id == principal_id)
                             .values(name=name, document=orjson.dumps(document).decode()))
                if members is not None:
                    conn.execute(members_table.delete().where(members_table.c.group_id == principal_id))
                    if members:
                        conn.execute(members_table.insert(), [{"group_id": principal_id, "member_id": m}
                                                              for m in members])
        except IntegrityError as exc:
            raise AlreadyExists(f"A {kind.replace('_', ' ')} named '{name}' already exists") from exc

    def delete_principal(self, principal_id: str) -> None:
        """The principal, its memberships both ways, and its credentials (revoking them)."""
        with self._engine.begin() as conn:
            conn.execute(members_table.delete().where(sa.or_(members_table.c.group_id == principal_id,
                                                             members_table.c.member_id == principal_id)))
            conn.execute(credentials_table.delete().where(credentials_table.c.owner_id == principal_id))
            conn.execute(principals_table.delete().where(principals_table.c.id == principal_id))

    # ---- credentials ----

    def insert_credential(self, record: dict) -> None:
        with self._engine.begin() as conn:
            conn.execute(credentials_table.insert().values(**{f: record[f] for f in CREDENTIAL_FIELDS}))

    def delete_credentials(self, token_ids: list[str]) -> None:
        if token_ids:
            with self._engine.begin() as conn:
                conn.execute(credentials_table.delete().where(credentials_table.c.token_id.in_(token_ids)))

    # ---- secret scopes and secrets (values are ciphertexts) ----

    def insert_scope(self, name: str, owner_id: str, now_ms: int) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(scopes_table.insert().values(name=name, owner_id=owner_id, creation_time=now_ms))
        except IntegrityError as exc:
            raise AlreadyExists(f"Scope {name} already exists!") from exc

    def scopes(self) -> list[dict]:
        with self._engine.connect() as conn:
            return [_row(r) for r in conn.execute(sa.select(scopes_table).order_by(scopes_table.c.name))]

    def delete_scope(self, name: str) -> bool:
        with self._engine.begin() as conn:
            conn.execute(secrets_table.delete().where(secrets_table.c.scope == name))
            conn.execute(secret_acls_table.delete().where(secret_acls_table.c.scope == name))
            return conn.execute(scopes_table.delete().where(scopes_table.c.name == name)).rowcount > 0

    def secret_acls(self, scope: str | None = None) -> list[dict]:
        """{"scope", "principal_id", "permission"} rows: one scope's, or every scope's."""
        query = sa.select(secret_acls_table).order_by(secret_acls_table.c.scope, secret_acls_table.c.principal_id)
        if scope is not None:
            query = query.where(secret_acls_table.c.scope == scope)
        with self._engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def put_secret_acl(self, scope: str, principal_id: str, permission: str) -> None:
        with self._engine.begin() as conn:
            where = (secret_acls_table.c.scope == scope) & (secret_acls_table.c.principal_id == principal_id)
            if not conn.execute(secret_acls_table.update().where(where).values(permission=permission)).rowcount:
                conn.execute(secret_acls_table.insert().values(scope=scope, principal_id=principal_id,
                                                               permission=permission))

    def delete_secret_acl(self, scope: str, principal_id: str) -> bool:
        with self._engine.begin() as conn:
            return conn.execute(secret_acls_table.delete().where(
                (secret_acls_table.c.scope == scope) & (secret_acls_table.c.principal_id == principal_id))).rowcount > 0

    def put_secret(self, scope: str, key: str, ciphertext: str, now_ms: int) -> None:
        with self._engine.begin() as conn:
            updated = conn.execute(secrets_table.update().where(
                (secrets_table.c.scope == scope) & (secrets_table.c.key == key))
                .values(value=ciphertext, last_updated_timestamp=now_ms)).rowcount
            if not updated:
                conn.execute(secrets_table.insert().values(scope=scope, key=key, value=ciphertext,
                                                           last_updated_timestamp=now_ms))

    def delete_secret(self, scope: str, key: str) -> bool:
        with self._engine.begin() as conn:
            return conn.execute(secrets_table.delete().where(
                (secrets_table.c.scope == scope) & (secrets_table.c.key == key))).rowcount > 0

    def secret_keys(self, scope: str) -> list[dict]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(secrets_table.c.key, secrets_table.c.last_updated_timestamp)
                                .where(secrets_table.c.scope == scope).order_by(secrets_table.c.key))
            return [_row(r) for r in rows]

    def secret_value(self, scope: str, key: str) -> str | None:
        with self._engine.connect() as conn:
            return conn.execute(sa.select(secrets_table.c.value).where(
                (secrets_table.c.scope == scope) & (secrets_table.c.key == key))).scalar()

    def all_secret_values(self) -> list[tuple[str, str, str]]:
        with self._engine.connect() as conn:
            return [(r.scope, r.key, r.value) for r in conn.execute(sa.select(secrets_table))]

    def replace_secret_value(self, scope: str, key: str, old: str, new: str) -> bool:
        """Compare-and-set, so a re-encryption never overwrites a value written meanwhile."""
        with self._engine.begin() as conn:
            return conn.execute(secrets_table.update().where(
                (secrets_table.c.scope == scope) & (secrets_table.c.key == key) & (secrets_table.c.value == old))
                .values(value=new)).rowcount > 0


def _row(row: sa.Row) -> dict:
    # Column names come back as SQLAlchemy's str subclass, which JSON encoders reject as keys.
    return {str(key): value for key, value in row._mapping.items()}
