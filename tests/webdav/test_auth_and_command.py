"""Users file, password hashing, the webdav/webdav-user commands and TLS."""
import os
import shutil
import subprocess
import sys

import pytest
from webdav4.client import Client

from pyme_desk.errors import UsageError
from pyme_desk.webdav.auth import Authenticator, hash_password, read_users, set_user, verify_password
from tests.webdav.conftest import PASSWORD, USER


def run_cli(*args, stdin="", home):
    env = dict(os.environ, HOME=str(home), USERPROFILE=str(home))
    return subprocess.run([sys.executable, "-m", "pyme_desk", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_hashes_are_salted_and_verify_in_constant_form():
    a, b = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("s3cret-pass", a) and verify_password("s3cret-pass", b)
    assert not verify_password("s3cret-pasS", a)
    assert not verify_password("s3cret-pass", "scrypt$garbage") and not verify_password("x", "md5$x$y")


def test_users_file_round_trip_and_reload(tmp_path):
    path = tmp_path / "users"
    assert set_user(path, "bob", "first-password") is True
    assert PASSWORD not in path.read_text() and "first-password" not in path.read_text()
    auth = Authenticator(path)
    assert auth.check("bob", "first-password") and auth.check("bob", "first-password")
    assert not auth.check("bob", "wrong") and not auth.check("nobody", "first-password")
    assert set_user(path, "bob", "second-password") is False
    assert auth.check("bob", "second-password") and not auth.check("bob", "first-password")
    assert not auth.check("cluster", "anything")  # no token configured


def test_bad_users_file_and_passwords_are_refused(tmp_path):
    path = tmp_path / "users"
    path.write_text("bob:plaintext\n")
    with pytest.raises(UsageError, match="line 1"):
        read_users(path)
    with pytest.raises(UsageError, match="at least"):
        set_user(tmp_path / "other", "bob", "short")
    with pytest.raises(UsageError, match="reserved"):
        set_user(tmp_path / "other", "cluster", "long-enough-password")
    with pytest.raises(UsageError, match="does not exist"):
        Authenticator(tmp_path / "missing")


def test_webdav_user_add_with_password_stdin(tmp_path):
    path = tmp_path / "users"
    r = run_cli("webdav-user", "add", "carol", "--users", path, "--password-stdin",
                stdin="a long password\n", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Authenticator(path).check("carol", "a long password")
    r = run_cli("webdav-user", "add", "dave", "--users", path, "--password-stdin", stdin="short\n", home=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_webdav_command_refusals_are_one_line(tmp_path, users_file):
    r = run_cli("webdav", "--port", 0, "--bind", "0.0.0.0", "--users", users_file,
                "--server", "http://127.0.0.1:9/", home=tmp_path)
    assert r.returncode == 2 and "TLS" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("webdav", "--port", 0, "--server", "http://127.0.0.1:9/", home=tmp_path)
    assert r.returncode == 2 and "users" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_share_on_a_self_signed_certificate(tmp_path, make_dav):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    dav = make_dav(cert=cert, key=key)
    assert dav.url.startswith("https://")
    client = Client(dav.url, auth=(USER, PASSWORD), retry=False, timeout=30, verify=False)
    client.mkdir("over_tls")
    assert client.ls("", detail=False) == ["over_tls"]
