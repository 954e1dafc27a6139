//! Blob leases ([Lease Blob]): the vault's writer lock. A lease is an exclusive, expiring right to write
//! one blob; the holder renews it before it expires, and a holder that vanished loses it when it expires.
//! Writes to a leased blob (its metadata, here) must carry the lease id.
//!
//! [Lease Blob]: https://learn.microsoft.com/rest/api/storageservices/lease-blob

use super::client::Request;
use super::AzureStore;
use crate::blob::{check_name, BlobError, BlobStore, Metadata};
use reqwest::Method;

impl AzureStore {
    fn lease_request(name: &str, action: &'static str) -> Request {
        Request::new("Lease Blob", Method::PUT, Some(name))
            .query("comp", "lease")
            .header("x-ms-lease-action", action)
    }

    /// Acquires a lease of `seconds` (15..=60) on `name`. `Ok(None)` when another holder has it (HTTP 409).
    pub fn acquire_lease(&self, name: &str, seconds: u32) -> Result<Option<String>, BlobError> {
        check_name(name)?;
        let req = Self::lease_request(name, "acquire").header("x-ms-lease-duration", seconds.to_string());
        match self.send(req) {
            Ok(resp) => match resp.header("x-ms-lease-id") {
                Some(id) => Ok(Some(id.to_owned())),
                None => Err(BlobError::BadResponse {
                    store: self.describe(),
                    operation: "Lease Blob",
                    name: name.to_owned(),
                    message: "no x-ms-lease-id in the answer".into(),
                }),
            },
            Err(BlobError::Http { status: 409, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renews a lease this process holds.
    pub fn renew_lease(&self, name: &str, lease_id: &str) -> Result<(), BlobError> {
        check_name(name)?;
        self.send(Self::lease_request(name, "renew").header("x-ms-lease-id", lease_id))
            .map(drop)
    }

    /// Releases a lease this process holds.
    pub fn release_lease(&self, name: &str, lease_id: &str) -> Result<(), BlobError> {
        check_name(name)?;
        self.send(Self::lease_request(name, "release").header("x-ms-lease-id", lease_id))
            .map(drop)
    }

    /// Breaks whatever lease `name` has, at once (for `unlock`).
    pub fn break_lease(&self, name: &str) -> Result<(), BlobError> {
        check_name(name)?;
        let req = Self::lease_request(name, "break").header("x-ms-lease-break-period", "0");
        match self.send(req) {
            // no lease to break
            Ok(_) | Err(BlobError::Http { status: 409, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the metadata of a blob this process holds the lease of.
    pub fn set_metadata_leased(
        &self,
        name: &str,
        metadata: &Metadata,
        lease_id: &str,
    ) -> Result<(), BlobError> {
        check_name(name)?;
        let req = Request::new("Set Blob Metadata", Method::PUT, Some(name))
            .query("comp", "metadata")
            .header("x-ms-lease-id", lease_id);
        self.send(Self::metadata_headers(req, metadata)?).map(drop)
    }
}
