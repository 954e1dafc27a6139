//! `seedship-agent delete-import`: once the import is in the vault, the import container still holds the
//! objects the data centre wrote, billed for their written pages. The completion verified every byte of them
//! before copying them into the vault, so this deletes each one the vault holds under the same name (at
//! least as long: incrementals append to volumes), leaves anything else in place and names it (a copy log, an
//! object someone else put there, a volume prune has since deleted from the vault), and then forgets the
//! import container in the policy so that `status` stops mentioning it.

use crate::policy::{Mode, Policy};
use crate::{store, Config, Exit};
use anyhow::{bail, Context};
use seedship_shared::blob::{BlobError, BlobInfo};
use std::collections::HashMap;

#[derive(Debug, clap::Args)]
pub struct DeleteImportCmd {
    /// List what would be deleted and what would stay, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the import container holds, split by whether the vault holds the same object.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// In the vault under the same name and at least as long: safe to delete.
    pub copied: Vec<BlobInfo>,
    /// Not in the vault, or different there: left in place.
    pub other: Vec<BlobInfo>,
}

/// Splits the import container's objects by what the vault holds.
pub fn split(import: Vec<BlobInfo>, vault: Vec<BlobInfo>) -> Split {
    let vault: HashMap<String, BlobInfo> = vault.into_iter().map(|o| (o.name.clone(), o)).collect();
    let mut s = Split::default();
    for o in import {
        match vault.get(&o.name) {
            Some(v) if v.len >= o.len => s.copied.push(o),
            _ => s.other.push(o),
        }
    }
    s
}

pub fn run(cfg: &Config, c: &DeleteImportCmd) -> anyhow::Result<Exit> {
    let mut pol = Policy::load(&cfg.state_dir)?;
    let vault = match (pol.mode, &pol.vault) {
        (Mode::Online, Some(v)) => v.clone(),
        _ => bail!(
            "import job {} is not in the vault yet: the import container is kept until `seedship-agent backup` \
             has verified the import and copied it into the vault",
            pol.job
        ),
    };
    let Some(container) = vault.import_container.clone() else {
        println!(
            "nothing to delete: no import container is recorded (already deleted, or the import was moved into \
             the vault by an earlier version)"
        );
        return Ok(Exit::Success);
    };
    let imported = store::open_container(&cfg.storage_key, &vault, &container)?;
    let objects = match imported.list("") {
        Ok(o) => o,
        Err(BlobError::ContainerNotFound { .. }) => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot list import container {container}")),
    };
    let in_vault = store::open_container(&cfg.storage_key, &vault, &vault.container)?
        .list("")
        .with_context(|| format!("cannot list vault container {}", vault.container))?;
    let s = split(objects, in_vault);
    let bytes: u64 = s.copied.iter().map(|o| o.len).sum();
    let verb = if c.dry_run { "would delete" } else { "deleting" };
    if !c.json {
        println!(
            "import container {container} of storage account {}: {verb} {} object(s) ({} MiB) the vault container \
             {} holds",
            vault.account,
            s.copied.len(),
            bytes >> 20,
            vault.container
        );
        for o in &s.other {
            println!(
                "  kept: {} ({} bytes): not in the vault, or shorter there (a copy log of the import, put there \
                 by someone else, or a volume prune deleted from the vault)",
                o.name, o.len
            );
        }
    }
    if !c.dry_run {
        for o in &s.copied {
            match imported.delete(&o.name) {
                Ok(()) | Err(BlobError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot delete {} from import container {container}; the rest is untouched and a \
                             rerun continues",
                            o.name
                        )
                    })
                }
            }
        }
        if let Some(v) = pol.vault.as_mut() {
            v.import_container = None;
        }
        pol.save(&cfg.state_dir)?;
    }
    if c.json {
        let names = |v: &[BlobInfo]| v.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
        let doc = serde_json::json!({
            "import_container": container,
            "dry_run": c.dry_run,
            "deleted": if c.dry_run { Vec::new() } else { names(&s.copied) },
            "would_delete": if c.dry_run { names(&s.copied) } else { Vec::new() },
            "bytes": bytes,
            "kept": names(&s.other),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if c.dry_run {
        println!("dry run: nothing deleted; run without --dry-run to delete them");
    } else {
        println!(
            "deleted {} object(s) ({} MiB) from import container {container}",
            s.copied.len(),
            bytes >> 20
        );
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedship_shared::blob::Metadata;

    fn o(name: &str, len: u64, meta: &[(&str, &str)]) -> BlobInfo {
        let mut m = Metadata::new();
        for (k, v) in meta {
            m.insert((*k).into(), (*v).into());
        }
        BlobInfo {
            name: name.into(),
            len,
            metadata: m,
        }
    }

    #[test]
    fn only_objects_the_vault_holds_at_least_as_long_are_deleted() {
        let import = vec![
            o("data/0", 4096, &[("b3", "aa")]),
            o("data/1", 4096, &[("b3", "bb")]),
            o("data/2", 4096, &[]),
            o("config", 512, &[]),
            o("waimportexport/log", 512, &[]),
        ];
        let vault = vec![
            o("data/0", 4096, &[("b3", "aa")]),
            o("data/1", 8192, &[("b3", "cc")]),
            o("data/2", 2048, &[]),
            o("config", 1024, &[]),
            o("snapshots/x", 512, &[]),
        ];
        let s = split(import, vault);
        let names = |v: &[BlobInfo]| v.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s.copied), ["data/0", "data/1", "config"]);
        assert_eq!(names(&s.other), ["data/2", "waimportexport/log"]);
    }
}
