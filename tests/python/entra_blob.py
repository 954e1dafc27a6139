#!/usr/bin/env python3
"""An independent client of seedship-emulator's Entra ID token endpoint and of a vault read with bearer tokens.

Usage:
  entra_blob.py AUTHORITY TENANT CLIENT_ID CERT_PEM SIGNING_CERT ACCOUNT_URL CONTAINER BLOB

azure-identity's CertificateCredential (MSAL underneath) signs in at AUTHORITY as the application CLIENT_ID with
the certificate and key in CERT_PEM; the token's RS256 signature is checked with `cryptography` against the
emulator's signing certificate SIGNING_CERT; then azure-storage-blob's client reads BLOB of CONTAINER at
ACCOUNT_URL (Azurite in OAuth mode, HTTPS) with that credential. Prints JSON: the token's issuer and audience,
whether the signature verified, and the blob's length and SHA-256. The emulator's and Azurite's TLS
certificates are trusted through REQUESTS_CA_BUNDLE. Used by tests/emulator/tests/it/entra.rs.
"""
import base64
import hashlib
import json
import sys

from azure.identity import CertificateCredential
from azure.storage.blob import BlobServiceClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from pageblobs import API_VERSION


def b64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify(token, signing_cert_path):
    header, claims, signature = token.split(".")
    cert = x509.load_pem_x509_certificate(open(signing_cert_path, "rb").read())
    try:
        cert.public_key().verify(
            b64url(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        ok = True
    except Exception:  # InvalidSignature
        ok = False
    return ok, json.loads(b64url(claims))


def main():
    authority, tenant, client_id, cert_pem, signing_cert, account_url, container, blob = sys.argv[1:9]
    credential = CertificateCredential(
        tenant, client_id, certificate_path=cert_pem, authority=authority, disable_instance_discovery=True
    )
    token = credential.get_token("https://storage.azure.com/.default").token
    ok, claims = verify(token, signing_cert)
    service = BlobServiceClient(account_url=account_url, credential=credential, api_version=API_VERSION)
    data = service.get_blob_client(container, blob).download_blob().readall()
    print(
        json.dumps(
            {
                "signature_ok": ok,
                "iss": claims.get("iss"),
                "aud": claims.get("aud"),
                "appid": claims.get("appid"),
                "len": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    main()
