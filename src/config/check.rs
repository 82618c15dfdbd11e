//! What every section's validation shares: errors located by key path, the set of ids seen,
//! and resolving paths inside the site root.

use std::collections::HashSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use super::{error_at, Locations};
use crate::error::{Error, Result};

pub(super) struct Check<'a> {
    path: &'a Path,
    root: &'a Path,
    /// The site root with symlinks resolved, which resolved paths must lie under.
    real_root: PathBuf,
    allow_outside_root: bool,
    locations: &'a Locations,
    /// Ids of models and images: one namespace, as both name pages.
    ids: HashSet<String>,
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl<'a> Check<'a> {
    pub fn new(path: &'a Path, root: &'a Path, allow_outside_root: bool, locations: &'a Locations) -> Result<Self> {
        let real_root = root
            .canonicalize()
            .map_err(|e| Error::at(path, format!("cannot resolve the site root `{}`: {e}", root.display())))?;
        Ok(Check {
            path,
            root,
            real_root,
            allow_outside_root,
            locations,
            ids: HashSet::new(),
        })
    }

    pub fn root(&self) -> &Path {
        self.root
    }

    /// An error at `key`, with the line of that key.
    pub fn err(&self, key: &str, msg: impl Display) -> Error {
        error_at(self.path, self.locations, key, msg)
    }

    /// Refuses an id that is malformed or already used (the error names this, the later,
    /// occurrence).
    pub fn id(&mut self, key: &str, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Err(self.err(key, format!("`{id}` is not a valid id: use [a-z0-9-]+")));
        }
        if !self.ids.insert(id.to_string()) {
            return Err(self.err(
                key,
                format!("duplicate id `{id}` (ids must be unique across models and images)"),
            ));
        }
        Ok(())
    }

    /// `shown` (at `full`) resolves to `real`, which must lie inside the site root unless allowed.
    pub fn inside(&self, key: &str, shown: &str, full: &Path, real: &Path) -> Result<()> {
        if self.allow_outside_root || real.starts_with(&self.real_root) {
            return Ok(());
        }
        let leads = if full == real {
            "is".to_string()
        } else {
            format!("leads to `{}`,", real.display())
        };
        Err(self.err(
            key,
            format!(
                "`{shown}` {leads} outside the site root `{}` (the folder holding the config); \
                 move it inside, or set `site.allow_outside_root: true` to allow paths outside it",
                self.real_root.display()
            ),
        ))
    }

    /// The file `p` names (relative to the site root), which must exist inside the root.
    pub fn file(&self, key: &str, p: &Path) -> Result<PathBuf> {
        let shown = p.display().to_string();
        let full = self.root.join(p);
        if !full.is_file() {
            return Err(self.err(
                key,
                format!("file `{shown}` not found (paths are relative to the config file)"),
            ));
        }
        let real = full
            .canonicalize()
            .map_err(|e| self.err(key, format!("cannot resolve `{shown}`: {e}")))?;
        self.inside(key, &shown, &full, &real)?;
        Ok(full)
    }

    /// The folder `p` names (relative to the site root), which must exist inside the root.
    pub fn dir(&self, key: &str, p: &Path) -> Result<PathBuf> {
        let shown = p.display().to_string();
        let full = self.root.join(p);
        if !full.is_dir() {
            return Err(self.err(
                key,
                format!("folder `{shown}` not found (paths are relative to the config file)"),
            ));
        }
        let real = full
            .canonicalize()
            .map_err(|e| self.err(key, format!("cannot resolve `{shown}`: {e}")))?;
        self.inside(key, &shown, &full, &real)?;
        Ok(full)
    }
}
