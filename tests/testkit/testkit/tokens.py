"""JSON Web Tokens the tests sign themselves: an RSA key, its JWKS for Envoy's `jwt_authn`
(`local_jwks`), and RS256 tokens with the claims a test chooses (expired ones included)."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .canaries import b64url

def _uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class JwtIssuer:
    """One issuer with one signing key (`kid`), generated per instance."""

    def __init__(self, issuer: str = "https://issuer.meshaudit.test", kid: str = "test-key") -> None:
        self.issuer = issuer
        self.kid = kid
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        """The public key as a JWKS document (what `local_jwks.inline_string` takes)."""
        numbers = self._key.public_key().public_numbers()
        key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
               "n": b64url(_uint(numbers.n)), "e": b64url(_uint(numbers.e))}
        return json.dumps({"keys": [key]})

    def token(self, claims: dict, *, lifetime_s: int = 600, audience: str | list[str] | None = None) -> str:
        """An RS256 token with `iss`, `iat`, `exp` (now + `lifetime_s`; negative: already
        expired), `aud` when given, and `claims`."""
        now = int(time.time())
        payload = {"iss": self.issuer, "iat": now - 5, "exp": now + lifetime_s, **claims}
        if audience is not None:
            payload["aud"] = audience
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"
