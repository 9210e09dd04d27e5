"""The libsodium verifier the coordinator uses agrees with OpenSSL's on every signature."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sdlcflow.identity.keys import VerifyKey

SIGNER = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def _openssl_accepts(signature: bytes, data: bytes) -> bool:
    try:
        SIGNER.public_key().verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _sodium_accepts(signature: bytes, data: bytes) -> bool:
    try:
        VerifyKey.of(SIGNER.public_key()).verify(signature, data)
    except InvalidSignature:
        return False
    return True


class TestVerifyKey:
    """VerifyKey accepts exactly the signatures OpenSSL accepts for honestly made keys."""

    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=300), flip=st.integers(min_value=-1, max_value=64 * 8 - 1))
    def test_agrees_with_openssl_on_good_and_tampered_signatures(
        self, data: bytes, flip: int
    ) -> None:
        signature = bytearray(SIGNER.sign(data))
        if flip >= 0:
            signature[flip // 8] ^= 1 << (flip % 8)
        assert _sodium_accepts(bytes(signature), data) == _openssl_accepts(bytes(signature), data)
        assert _sodium_accepts(bytes(signature), data) == (flip < 0)

    @settings(max_examples=100, deadline=None)
    @given(data=st.binary(min_size=1, max_size=300), index=st.integers(min_value=0))
    def test_changed_data_is_refused(self, data: bytes, index: int) -> None:
        signature = SIGNER.sign(data)
        changed = bytearray(data)
        changed[index % len(data)] ^= 0x01
        assert not _sodium_accepts(signature, bytes(changed))
        assert not _openssl_accepts(signature, bytes(changed))

    def test_signature_of_another_key_is_refused(self) -> None:
        with pytest.raises(InvalidSignature):
            VerifyKey.of(SIGNER.public_key()).verify(OTHER.sign(b"event"), b"event")

    @pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
    def test_signature_of_wrong_length_is_refused(self, length: int) -> None:
        signature = (SIGNER.sign(b"event") * 3)[:length]
        with pytest.raises(InvalidSignature):
            VerifyKey.of(SIGNER.public_key()).verify(signature, b"event")
        assert not _openssl_accepts(signature, b"event")
