"""lib-cql's SASL PLAIN login against a node with PasswordAuthenticator."""
from conftest import run_scenario


def test_password_authenticator(single_auth, itest):
    out = run_scenario(itest, "auth")
    assert "wrong password: bad_credentials" in out
    assert "no credentials: bad_credentials" in out
