"""The simulator's RSA signing key: created once, kept in the data dir, published as a JWKS.

Webhook JWTs and API access tokens are signed with it; keeping it across restarts means a
receiver that cached the JWKS keeps accepting webhooks after the simulator restarts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class SigningKey:
    """An RS256 key pair with a stable ``kid`` (the RFC 7638 thumbprint of its public half)."""

    algorithm = "RS256"

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self._public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key))
        self.kid = _thumbprint(self._public_jwk)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh 2048-bit RSA key."""
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Load the PEM at ``path``, creating it (mode 0600) on first start."""
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(loaded)
        key = cls.generate()
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return cls.load_or_create(path)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        return key

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK with kid, use and alg."""
        return {**self._public_jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def jwks(self) -> dict[str, Any]:
        """The document served at ``/.well-known/jwks.json``."""
        return {"keys": [self.jwk()]}

    def sign(self, claims: dict[str, Any]) -> str:
        """An RS256 JWT of ``claims`` with this key's kid in the header."""
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid})

    def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        """Claims of a token this key signed; expiry is the caller's check (injected clock)."""
        return jwt.decode(
            token,
            self.public_key,
            algorithms=[self.algorithm],
            audience=audience,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["exp"]},
        )


def _thumbprint(public_jwk: dict[str, Any]) -> str:
    canonical = json.dumps(
        {k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]
