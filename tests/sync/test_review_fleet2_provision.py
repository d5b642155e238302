"""`edge fleet provision`: a --ca-dir whose certificate is not a CA's (a device's own certificate and key, a
self-signed end-entity certificate, a CA certificate whose KeyUsage forbids signing certificates) is refused
with nothing written; the device key ends 0600 even when --force overwrites an older, wider-open key file.
Real keys and certificates (cryptography, and make_certs.sh's openssl CA)."""
from __future__ import annotations

import datetime
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.app.cli import main
from sync.provision import ProvisionError, load_ca

MAKE_CERTS = Path(__file__).resolve().parents[2] / "sync" / "mosquitto" / "make_certs.sh"


@pytest.fixture(scope="module")
def fleet_ca(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(MAKE_CERTS), str(d)], check=True, capture_output=True)
    return d


def provision(*args: str) -> int:
    return main(["--log-level", "ERROR", "fleet", "provision", *args])


def self_signed(d: Path, *exts: tuple[x509.ExtensionType, bool]) -> Path:
    """A folder with ca.crt / ca.key: a self-signed EC certificate with these (extension, critical)."""
    d.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not a fleet CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now)
         .not_valid_after(now + datetime.timedelta(days=1)))
    for ext, critical in exts:
        b = b.add_extension(ext, critical=critical)
    (d / "ca.crt").write_bytes(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    (d / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    return d


def key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def test_a_certificate_that_is_not_a_ca_is_refused(fleet_ca, tmp_path):
    assert provision("s001/d001", "--ca-dir", str(fleet_ca), "--out", str(tmp_path / "d1")) == 0
    load_ca(fleet_ca / "ca.crt", fleet_ca / "ca.key")  # make_certs.sh's CA: CA:TRUE
    device = tmp_path / "device-as-ca"  # an admin pointing --ca-dir at a device's files
    device.mkdir()
    shutil.copy(tmp_path / "d1" / "s001_d001.crt", device / "ca.crt")
    shutil.copy(tmp_path / "d1" / "s001_d001.key", device / "ca.key")
    cases = {
        "device": device,
        "no BasicConstraints": self_signed(tmp_path / "plain"),
        "CA:FALSE": self_signed(tmp_path / "leaf", (x509.BasicConstraints(ca=False, path_length=None), True)),
        "no keyCertSign": self_signed(tmp_path / "nosign", (x509.BasicConstraints(ca=True, path_length=None), True),
                                      (key_usage(False), True)),
    }
    for what, ca_dir in cases.items():
        out = tmp_path / f"out-{ca_dir.name}"
        with pytest.raises(SystemExit, match=f"^edge fleet provision: {ca_dir}/ca.crt is not a CA certificate"):
            provision("s001/d002", "--ca-dir", str(ca_dir), "--out", str(out))
        assert not out.exists(), what
    good = self_signed(tmp_path / "good", (x509.BasicConstraints(ca=True, path_length=0), True),
                       (key_usage(True), True))
    assert provision("s001/d002", "--ca-dir", str(good), "--out", str(tmp_path / "d2")) == 0
    issued = x509.load_pem_x509_certificate((tmp_path / "d2" / "s001_d002.crt").read_bytes())
    issued.verify_directly_issued_by(load_ca(good / "ca.crt", good / "ca.key")[0])
    with pytest.raises(ProvisionError, match="is not the key of"):  # the existing check still holds
        load_ca(good / "ca.crt", tmp_path / "plain" / "ca.key")


def test_force_leaves_the_device_key_0600(fleet_ca, tmp_path):
    out = tmp_path / "out"
    assert provision("s001/d001", "--ca-dir", str(fleet_ca), "--out", str(out)) == 0
    key = out / "s001_d001.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    old = key.read_bytes()
    key.chmod(0o644)  # e.g. copied around with a default umask
    with pytest.raises(SystemExit, match="would overwrite"):
        provision("s001/d001", "--ca-dir", str(fleet_ca), "--out", str(out))
    assert provision("s001/d001", "--ca-dir", str(fleet_ca), "--out", str(out), "--force") == 0
    assert key.read_bytes() != old  # a new key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    serialization.load_pem_private_key(key.read_bytes(), password=None)
