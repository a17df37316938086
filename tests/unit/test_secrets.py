"""Bearer tokens and passwords: the token format, digests compared in constant time, argon2."""

from __future__ import annotations

import pytest

from modelrunner.auth import secrets


def test_a_composed_token_parses_back_into_its_parts() -> None:
    minted = secrets.mint()
    token = secrets.compose(secrets.USER_TOKEN, 42, minted.secret)

    parsed = secrets.parse(token)

    assert token.startswith("mrt_42_")
    assert parsed == secrets.PresentedToken(secrets.USER_TOKEN, 42, minted.secret)
    assert secrets.matches(parsed.secret, minted.digest)


def test_a_secret_may_hold_underscores() -> None:
    parsed = secrets.parse("mrt_7_a_b_c")

    assert parsed is not None
    assert (parsed.row_id, parsed.secret) == (7, "a_b_c")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "mrt",
        "mrt_",
        "mrt_12",
        "mrt_12_",
        "mrt__secret",
        "mrt_x1_secret",
        "mrt_-1_secret",
        "mrt_1.5_secret",
        "xyz_1_secret",
        "MRT_1_secret",
        "Bearer mrt_1_secret",
        "eyJhbGciOiJIUzI1NiJ9.e30.signature",
    ],
)
def test_parse_rejects_malformed_tokens(token: str) -> None:
    assert secrets.parse(token) is None


def test_parse_rejects_digits_other_than_ascii() -> None:
    assert secrets.parse("mrt_\u00b2_secret") is None


def test_an_attempt_token_parses_with_its_own_kind() -> None:
    parsed = secrets.parse("mra_3_secret")

    assert parsed is not None
    assert parsed.kind == secrets.ATTEMPT_TOKEN


def test_matches_is_false_for_a_wrong_secret_or_no_digest() -> None:
    minted = secrets.mint()

    assert secrets.matches(minted.secret, minted.digest)
    assert not secrets.matches(minted.secret + "x", minted.digest)
    assert not secrets.matches(secrets.mint().secret, minted.digest)
    assert not secrets.matches(minted.digest, minted.digest)  # the digest is not a password
    assert not secrets.matches(minted.secret, None)


def test_minted_secrets_are_random_and_only_their_sha256_is_kept() -> None:
    first, second = secrets.mint(), secrets.mint()

    assert first.secret != second.secret
    assert len(first.secret) >= 43  # 256 random bits, URL-safe base64
    assert len(first.digest) == 64 and int(first.digest, 16) >= 0
    assert first.secret not in first.digest


def test_passwords_are_argon2id_hashes_that_verify_only_the_right_password() -> None:
    stored = secrets.hash_password("correct horse")

    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert secrets.password_matches("correct horse", stored)
    assert not secrets.password_matches("correct horse ", stored)
    assert not secrets.password_matches("correct horse", None)
    assert not secrets.password_matches("correct horse", "not a hash")


def test_a_password_matches_only_its_own_hash() -> None:
    stored = secrets.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert secrets.password_matches("correct horse", stored)
    assert not secrets.password_matches("wrong", stored)
    assert not secrets.password_matches("correct horse", None)  # no such user, or no password set
    assert not secrets.password_matches("correct horse", "not a hash")
