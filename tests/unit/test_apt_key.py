"""OpenPGP key checks behind odin.stack.apt_key_check, on recorded `gpg --show-keys --with-colons` output."""

from pathlib import Path

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _apt_key as ak

FIXTURES = Path(__file__).parent / "fixtures" / "apt_key"
ONE = "04E51C7BE05FEA6D7A05392778CB5A821D8BCA96"
ONE_SUBKEY = "D552B1EF138F8284B4FA938A4E6F55983A7D5C94"
TWO = "F034E23ED614F7C34170F29FAF23C2AD286414CD"
# 2025-06-01: after key two expired (2024-01-01), key one never expires.
NOW = 1748736000


def keys(name):
    return ak.gpg_primary_keys((FIXTURES / name).read_text())


def test_primary_keys_leave_subkeys_out():
    found = keys("one.colons")
    assert [k["fingerprint"] for k in found] == [ONE]
    assert found[0]["uids"] == ["ODIN test key one <one@example.invalid>"]
    assert found[0]["expires"] is None


def test_two_keys_in_one_file():
    assert [k["fingerprint"] for k in keys("both.colons")] == [ONE, TWO]
    assert keys("two.colons")[0]["expires"] == 1704067200


@pytest.mark.parametrize(
    ("name", "pinned", "problem"),
    [
        pytest.param("one.colons", ONE, None, id="pinned-key"),
        pytest.param("one.colons", ONE.lower(), None, id="lower-case-pin"),
        pytest.param("one.colons", " ".join(ONE[i : i + 4] for i in range(0, 40, 4)), None, id="spaced-pin"),
        pytest.param("one.colons", TWO, "expected exactly the key " + TWO, id="wrong-key"),
        pytest.param("one.colons", ONE_SUBKEY, "expected exactly the key", id="subkey-is-not-a-pin"),
        pytest.param("both.colons", ONE, "holds " + ONE + ", " + TWO, id="extra-key-smuggled-in"),
        pytest.param("two.colons", TWO, "expired", id="expired-key"),
        pytest.param(None, ONE, "no OpenPGP public key", id="no-key"),
    ],
)
def test_check_key(name, pinned, problem):
    text = (FIXTURES / name).read_text() if name else ""
    problems = ak.check_key(ak.gpg_primary_keys(text), pinned, NOW)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(("expires", "expired"), [(NOW + 1, False), (NOW, True), (NOW - 1, True), (None, False)])
def test_expiry_is_checked_against_now(expires, expired):
    key = [{"fingerprint": ONE, "validity": "-", "expires": expires, "uids": []}]
    assert bool(ak.check_key(key, ONE, NOW)) is expired


def test_revoked_key():
    revoked = [{"fingerprint": ONE, "validity": "r", "expires": None, "uids": []}]
    assert ak.check_key(revoked, ONE, NOW) == ["key %s is revoked" % ONE]
