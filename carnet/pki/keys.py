"""Private keys: generation, and the key vault that keeps them encrypted at rest.

Key types (the ``--key`` values and ``settings.pki.default_key_type``):

- ``rsa2048`` / ``rsa3072``: RSA with public exponent 65537 (RFC 8017), the types every S/MIME client supports;
- ``p256``: ECDSA on NIST P-256 (RFC 5480), signatures with SHA-256 and ECDH key agreement (RFC 5753).

The vault seals a key as a versioned blob::

    version (1 byte, 0x01) || nonce (12 bytes) || AES-256-GCM(KEK, nonce, PKCS#8 DER, AAD) (ciphertext || 16-byte tag)

with ``AAD = b"carnet-sealed-key:1:" + owner``. The owner label (``"ca:persons"``, ``"cert:<serial hex>"``) binds the
blob to the row it belongs to: a blob copied onto another certificate does not open. AES-GCM is NIST SP 800-38D;
nonces are random, 96 bits — far below the 2^32 invocations per key the standard allows for random nonces.

Other secrets (e.g. a mailbox's TOTP seed, RFC 6238) are sealed the same way by :meth:`KeyVault.seal_secret`, with
``AAD = b"carnet-secret-v1:" + owner``: the two AAD prefixes differ, so a sealed key never opens as a secret nor a
sealed secret as a key, even under the same owner label.

The key-encryption key (KEK) is derived from ``settings.key_encryption_secret()`` with scrypt (RFC 7914,
N=2^15, r=8, p=1, 32 MiB) once per process and secret. scrypt rather than HKDF because the secret may be an
operator-chosen passphrase (``CARNET_KEY_SECRET``), which a memory-hard KDF protects against guessing; for the
default random 256-bit secret the cost is a one-off ~0.1 s at start-up. The salt is fixed and carnet-specific: every
node of a cluster must derive the same KEK from the same secret with no shared state but the database.

Nothing here logs or prints key material; :class:`KeyVault`'s ``repr`` shows no secret.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING, Final, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from carnet.config import KeyType

if TYPE_CHECKING:
    from carnet.config import Settings

KEY_TYPES: Final[tuple[str, ...]] = get_args(KeyType)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SEALED_KEY_VERSION: Final = 1
SEALED_SECRET_VERSION: Final = 1
_NONCE_BYTES: Final = 12
_AAD_PREFIX: Final = b"carnet-sealed-key:1:"
_SECRET_AAD_PREFIX: Final = b"carnet-secret-v1:"
_KDF_SALT: Final = b"carnet key-encryption key, scrypt, v1"
_SCRYPT_N: Final = 2**15
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1


class PkiError(Exception):
    """Base of every ``carnet.pki`` error (defined here, in the module every other one imports)."""


class UnsupportedKeyType(PkiError, ValueError):
    """A key type other than ``rsa2048``, ``rsa3072`` or ``p256``."""


class SealedKeyError(PkiError):
    """A sealed key does not open: wrong secret, wrong owner label, tampered or unknown blob format."""


def generate_key(key_type: str) -> PrivateKey:
    """A fresh private key of ``key_type`` (CPU-bound: call it through ``asyncio.to_thread`` in servers)."""
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise UnsupportedKeyType(f"unsupported key type {key_type!r} (choose one of {', '.join(KEY_TYPES)})")


def key_type_of(key: PrivateKey | PublicKey) -> str:
    """The carnet key-type name of a private or public key."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size in (2048, 3072):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return "p256"
    raise UnsupportedKeyType(f"unsupported key {type(key).__name__}")


def public_keys_match(key: PrivateKey, public: PublicKey) -> bool:
    """Whether ``public`` is the public half of ``key`` (compared as SubjectPublicKeyInfo DER)."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == public.public_bytes(*spki)


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (RFC 5958) — only for files that must be plaintext, such as the TLS server key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


_kek_cache: dict[bytes, bytes] = {}
_kek_lock = threading.Lock()


def _derive_kek(secret: bytes) -> bytes:
    """The KEK for ``secret``: scrypt once per process (RFC 7914), cached under a hash of the secret."""
    cache_key = hashlib.sha256(b"carnet-kek-cache:" + secret).digest()
    with _kek_lock:
        kek = _kek_cache.get(cache_key)
        if kek is None:
            kek = Scrypt(salt=_KDF_SALT, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(secret)
            _kek_cache[cache_key] = kek
    return kek


class KeyVault:
    """Seals and opens private keys with AES-256-GCM under the KEK derived from the configured secret."""

    __slots__ = ("_aead",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise SealedKeyError("the key-encryption secret is empty")
        self._aead = AESGCM(_derive_kek(secret))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyVault:
        """The vault for ``settings.key_encryption_secret()`` (created under the data directory when unset)."""
        return cls(settings.key_encryption_secret())

    def __repr__(self) -> str:
        return "<KeyVault AES-256-GCM>"

    def seal(self, key: PrivateKey, owner: str) -> bytes:
        """Encrypt ``key`` (PKCS#8 DER) for ``owner``; the blob opens only with the same secret and owner."""
        plaintext = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        nonce = os.urandom(_NONCE_BYTES)
        return bytes([SEALED_KEY_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, _aad(owner))

    def open(self, blob: bytes, owner: str) -> PrivateKey:
        """Decrypt a blob made by :meth:`seal` for ``owner``; :class:`SealedKeyError` if anything is off."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != SEALED_KEY_VERSION:
            raise SealedKeyError(f"sealed key of {owner!r} is not in a known format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, _aad(owner))
        except InvalidTag:
            raise SealedKeyError(
                f"sealed key of {owner!r} does not open: wrong key-encryption secret, wrong owner or altered blob"
            ) from None
        # The blob is authenticated (AES-GCM under our KEK) and was made by seal() from a key cryptography
        # generated: re-validating the RSA key (~100 ms for RSA-3072) on every open would only cost time.
        key = serialization.load_der_private_key(plaintext, password=None, unsafe_skip_rsa_key_validation=True)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SealedKeyError(f"sealed key of {owner!r} is of an unsupported type")
        return key

    def seal_secret(self, secret: bytes, owner: str) -> bytes:
        """Encrypt an arbitrary ``secret`` for ``owner`` (AES-256-GCM, NIST SP 800-38D; AAD distinct from keys')."""
        nonce = os.urandom(_NONCE_BYTES)
        return bytes([SEALED_SECRET_VERSION]) + nonce + self._aead.encrypt(nonce, secret, _aad(owner, secret=True))

    def open_secret(self, blob: bytes, owner: str) -> bytes:
        """Decrypt a blob made by :meth:`seal_secret` for ``owner``; :class:`SealedKeyError` if anything is off."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != SEALED_SECRET_VERSION:
            raise SealedKeyError(f"sealed secret of {owner!r} is not in a known format")
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, _aad(owner, secret=True))
        except InvalidTag:
            raise SealedKeyError(
                f"sealed secret of {owner!r} does not open: wrong key-encryption secret, wrong owner or altered blob"
            ) from None


def _aad(owner: str, *, secret: bool = False) -> bytes:
    if not owner:
        raise SealedKeyError(f"a sealed {'secret' if secret else 'key'} needs an owner label")
    return (_SECRET_AAD_PREFIX if secret else _AAD_PREFIX) + owner.encode()
