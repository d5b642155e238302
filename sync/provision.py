"""`edge fleet provision STORE/DEVICE`: issue a device's client certificate from the fleet CA and its `[sync]`
snippet (docs/SYNC.md "Broker configs").

The certificate's CN is "<store>/<device>": the production broker (sync/mosquitto/prod.conf) makes it the
username and the client id, and the pattern ACL (sync/mosquitto/acl) derives every topic the device may use
from it, so provisioning needs no broker-side entry. The fleet CA is the one `make_certs.sh` makes
(`ca.crt` + `ca.key`, RSA or EC). With `--csr` the device keeps its private key: only the CSR is signed, and
its subject is replaced by the identity being provisioned.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync import topics

log = logging.getLogger(__name__)


class ProvisionError(ValueError):
    """Provisioning refused: bad identity, unusable CA, bad CSR, or files that would be overwritten."""


@dataclass
class Issued:
    store: str
    device: str
    cert_pem: bytes
    key_pem: bytes | None  # None when a CSR was signed (the device keeps its key)

    @property
    def identity(self) -> str:
        return f"{self.store}/{self.device}"


def parse_identity(identity: str) -> tuple[str, str]:
    """(store, device) of "STORE/DEVICE"; ProvisionError unless both are valid ids."""
    store, sep, device = str(identity).partition("/")
    try:
        if not sep:
            raise ValueError("expected STORE/DEVICE")
        return topics.check_id(store, "store id"), topics.check_id(device, "device id")
    except ValueError as e:
        raise ProvisionError(f"{identity!r}: {e}") from None


def load_ca(cert_path: Path, key_path: Path):
    """(certificate, private key) of the fleet CA; ProvisionError if unreadable, if the key is not the
    certificate's, or if the certificate is not a CA's (BasicConstraints CA flag, and keyCertSign when it has a
    KeyUsage): certificates it signed would not verify."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        exts = cert.extensions
    except (OSError, ValueError, TypeError) as e:
        raise ProvisionError(f"cannot load the fleet CA ({cert_path}, {key_path}): {e}") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ProvisionError(f"{key_path} is not the key of {cert_path}")
    try:
        is_ca = exts.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ProvisionError(f"{cert_path} is not a CA certificate (no BasicConstraints CA:TRUE)")
    try:
        if not exts.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            raise ProvisionError(f"{cert_path} is not a CA certificate (its KeyUsage lacks keyCertSign)")
    except x509.ExtensionNotFound:
        pass
    return cert, key


def issue(identity: str, ca_cert, ca_key, *, days: int = 825, csr_pem: bytes | None = None) -> Issued:
    """A client certificate for STORE/DEVICE signed by the fleet CA (new EC P-256 key unless csr_pem)."""
    store, device = parse_identity(identity)
    if days < 1:  # 0 days: a certificate that has expired by the time the device gets it
        raise ProvisionError(f"--days {days}: a certificate must be valid for at least 1 day")
    if csr_pem is not None:
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as e:
            raise ProvisionError(f"not a PEM certificate request: {e}") from None
        if not csr.is_signature_valid:
            raise ProvisionError("the certificate request's signature does not verify")
        public_key, key_pem = csr.public_key(), None
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = key.public_key()
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{store}/{device}")])
    cert = (x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Issued(store, device, cert.public_bytes(serialization.Encoding.PEM), key_pem)


def snippet(issued: Issued, *, broker: str, port: int, install_dir: str) -> str:
    """The device's TOML lines: merge into its device config."""
    base = f"{issued.store}_{issued.device}"
    d = install_dir.rstrip("/")
    return "\n".join([
        f"# device {issued.identity}: merge into its device config (edge fleet provision)",
        "[device]", f'id = "{issued.device}"', f'store = "{issued.store}"', "",
        "[sync]", f'broker = "{broker}"', f"port = {port}", "tls = true",
        f'client_id = "{issued.identity}"  # the broker uses the certificate identity whatever is sent',
        f'ca_file = "{d}/ca.crt"', f'cert_file = "{d}/{base}.crt"', f'key_file = "{d}/{base}.key"', ""])


def provision(identity: str, ca_dir: Path, out_dir: Path, *, broker: str, port: int = 8883,
              install_dir: str = "/etc/storefront", days: int = 825, csr_pem: bytes | None = None,
              force: bool = False) -> dict:
    """Issue STORE/DEVICE's certificate into out_dir (key 0600, certificate, the fleet CA certificate and the
    TOML snippet). Returns what was written."""
    ca_dir, out_dir = Path(ca_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ProvisionError(f"--out {out_dir} is a file: pass the folder to write the device's files into")
    ca_cert, ca_key = load_ca(ca_dir / "ca.crt", ca_dir / "ca.key")
    issued = issue(identity, ca_cert, ca_key, days=days, csr_pem=csr_pem)
    base = out_dir / f"{issued.store}_{issued.device}"
    files = {"cert": base.with_suffix(".crt"), "snippet": base.with_suffix(".toml"), "ca": out_dir / "ca.crt"}
    if issued.key_pem is not None:
        files["key"] = base.with_suffix(".key")
    if not force:
        existing = [str(p) for k, p in files.items() if k != "ca" and p.exists()]
        if existing:
            raise ProvisionError(f"would overwrite {', '.join(existing)} (use --force to issue a new certificate)")
    out_dir.mkdir(parents=True, exist_ok=True)
    if issued.key_pem is not None:
        fd = os.open(files["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # before the key is written: os.open's mode applies only to a new file (--force)
            f.write(issued.key_pem)
    files["cert"].write_bytes(issued.cert_pem)
    if files["ca"].resolve() != (ca_dir / "ca.crt").resolve():
        files["ca"].write_bytes((ca_dir / "ca.crt").read_bytes())
    text = snippet(issued, broker=broker, port=port, install_dir=install_dir)
    files["snippet"].write_text(text)
    log.info("provisioned %s: %s", issued.identity, {k: str(v) for k, v in files.items()})
    return {"identity": issued.identity, "files": {k: str(v) for k, v in files.items()}, "snippet": text,
            "access": "pattern ACL (sync/mosquitto/acl): nothing to add on the broker"}


def add_arguments(p) -> None:
    from sync.cli import port

    p.add_argument("identity", metavar="STORE/DEVICE")
    p.add_argument("--ca-dir", required=True, help="folder with the fleet CA's ca.crt and ca.key (make_certs.sh)")
    p.add_argument("--out", default=".", help="where to write STORE_DEVICE.{key,crt,toml} and ca.crt")
    p.add_argument("--broker", default="mqtt.example.net", help="broker host for the snippet")
    p.add_argument("--port", type=port, default=8883, help="device listener port for the snippet")
    p.add_argument("--install-dir", default="/etc/storefront", help="where the files go on the device")
    p.add_argument("--days", type=int, default=825, help="validity of the certificate (at least 1)")
    p.add_argument("--csr", help="sign this PEM certificate request instead of making a key")
    p.add_argument("--force", action="store_true", help="overwrite an earlier certificate of this device")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    try:
        csr = Path(args.csr).read_bytes() if args.csr else None
        out = provision(args.identity, Path(args.ca_dir), Path(args.out), broker=args.broker, port=args.port,
                        install_dir=args.install_dir, days=args.days, csr_pem=csr, force=args.force)
    except (ProvisionError, OSError) as e:
        raise SystemExit(f"edge fleet provision: {e}") from None
    if args.json:
        print(json.dumps(out))
    else:
        print(out["snippet"], end="")
        print(f"# written: {', '.join(out['files'].values())}\n# access: {out['access']}")
    return 0
