"""The Azure SDK for Python (azure-mgmt-storageimportexport, api-version 2021-01-01) against seedship-emulator's
Resource Manager endpoints: list locations, create, read, update (ship) and delete an import job.

Usage: arm_sdk.py certificate|secret ENTRA_APP_JSON COMBINED_PEM RESOURCE_GROUP STORAGE_ACCOUNT_ID

Signs in at the emulator's Entra ID authority with azure-identity (MSAL underneath), as the application
registration `seedship-emulator init` wrote into ENTRA_APP_JSON: `certificate` uses CertificateCredential with
COMBINED_PEM (the application's certificate and key in one PEM file, as azure-identity wants it), `secret` uses
ClientSecretCredential with the secret read from the registration's `client_secret_file` (never from the
command line). The emulator's CA is trusted through REQUESTS_CA_BUNDLE. Prints one JSON object with what each
step saw; the Rust test (tests/emulator/tests/it/arm.rs) checks it.
"""
import json
import sys

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import CertificateCredential, ClientSecretCredential
from azure.mgmt.storageimportexport import StorageImportExport
from azure.mgmt.storageimportexport import models as m


class RecordingCredential:
    """Wraps an azure-identity credential and records the scopes the SDK asks for."""

    def __init__(self, inner):
        self.inner = inner
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return self.inner.get_token(*scopes, **kwargs)


def credential(kind, app, combined_pem):
    common = {"authority": app["authority"], "disable_instance_discovery": True}
    if kind == "certificate":
        return CertificateCredential(app["tenant"], app["client_id"], certificate_path=combined_pem, **common)
    if kind == "secret":
        with open(app["client_secret_file"], encoding="utf-8") as f:
            secret = f.read().strip()
        return ClientSecretCredential(app["tenant"], app["client_id"], secret, **common)
    raise SystemExit(f"unknown credential kind {kind!r}: use certificate or secret")


def main():
    kind, app_json, combined_pem, rg, account_id = sys.argv[1:6]
    with open(app_json, encoding="utf-8") as f:
        app = json.load(f)
    cred = RecordingCredential(credential(kind, app, combined_pem))
    job, job2 = f"{kind}job", f"{kind}job2"
    client = StorageImportExport(
        cred, app["subscription"], base_url=app["management_endpoint"], connection_verify=app["ca_certificate"]
    )
    out = {}
    out["locations"] = sorted(l.name for l in client.locations.list())
    west = client.locations.get("westus")
    out["west_us_city"] = west.city
    body = m.PutJobParameters(
        location="West US",
        properties=m.JobDetails(
            storage_account_id=account_id,
            job_type="Import",
            return_address=m.ReturnAddress(
                recipient_name="Backup Admin", street_address1="1 Main Street", city="Springfield",
                state_or_province="WA", postal_code="98000", country_or_region="USA",
                phone="555-0100", email="admin@example.invalid"),
            return_shipping=m.ReturnShipping(carrier_name="FedEx", carrier_account_number="123"),
            diagnostics_path="waimportexport",
            log_level="Verbose",
            backup_drive_manifest=False,
            drive_list=[m.DriveStatus(
                drive_id=f"{kind.upper()}1",
                bit_locker_key="259358-100188-581471-154165-090552-296406-410091-426844",
                manifest_file="\\DriveManifest.xml",
                manifest_hash="B306C4B34DAA0E99957A4B9C779D2FA2")],
        ),
    )
    created = client.jobs.create(job, rg, body)
    out["created"] = {"id": created.id, "state": created.properties.state,
                      "drive_state": created.properties.drive_list[0].state,
                      "key_echoed": created.properties.drive_list[0].bit_locker_key is not None,
                      "ship_to": created.properties.shipping_information.city}
    got = client.jobs.get(job, rg)
    out["got_state"] = got.properties.state
    out["listed"] = [j.name for j in client.jobs.list_by_resource_group(rg)]
    out["keys"] = [(k.drive_id, k.bit_locker_key) for k in client.bit_locker_keys.list(job, rg)]
    update = m.UpdateJobParameters(
        state="Shipping",
        delivery_package=m.DeliveryPackageInformation(carrier_name="FedEx", tracking_number="1234567890",
                                                      drive_count=1, ship_date="2026-12-02"),
    )
    updated = client.jobs.update(job, rg, update)
    out["updated_state"] = updated.properties.state
    out["tracking"] = updated.properties.delivery_package.tracking_number
    try:
        client.jobs.delete(job, rg)
        out["delete_while_shipping"] = "deleted"
    except HttpResponseError as e:
        out["delete_while_shipping"] = [e.status_code, e.error.code if e.error else None]
    # back to Creating is impossible; make a second job and delete it while Creating
    client.jobs.create(job2, rg, body)
    client.jobs.delete(job2, rg)
    try:
        client.jobs.get(job2, rg)
        out["after_delete"] = "still there"
    except ResourceNotFoundError as e:
        out["after_delete"] = [e.status_code, e.error.code if e.error else None]
    out["scopes"] = sorted(set(cred.scopes))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
