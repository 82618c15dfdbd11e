//! The artifact cache: every computed result (a forward pass's arrays and pictures, one
//! method's map for one target, ...) is an entry keyed by a blake3 hash of everything that
//! determines it: the weights' and the image's bytes, the architecture and input settings,
//! the method and its parameters, the target, and the version of the code that computes it.
//!
//! An entry is a folder `entries/<2 hex>/<key>/` holding the entry's files and
//! `entry.json` (its data for the pages, and the blake3 of every file). It is written into
//! `tmp/` and renamed into place, so an interrupted build never leaves a half-written entry.
//! Files are made read-only and hard-linked into the site, so reusing an entry costs no copy.
//!
//! Paths inside an entry's data start with [`ENTRY`]; [`Stored::placed`] replaces that
//! prefix by the folder the files are linked into, so an entry does not depend on page paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, IoContext, Result};

/// Changes whenever the arrays or pictures the compute code produces change, so that
/// entries written by older code are not reused.
pub const COMPUTE_VERSION: &str = "4";

/// The prefix of file paths inside an entry's data.
pub const ENTRY: &str = "@entry/";

/// The default cache folder, next to the config.
pub const DEFAULT_DIR: &str = ".cnnscope-cache";

/// Builds a cache key from named fields (each length-prefixed, so fields cannot run together).
pub struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    pub fn new(kind: &str) -> Self {
        let h = KeyHasher(blake3::Hasher::new());
        h.field("cnnscope", env!("CARGO_PKG_VERSION"))
            .field("compute", COMPUTE_VERSION)
            .field("kind", kind)
    }

    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let v = value.as_ref();
        self.0.update(&(name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update(&(v.len() as u64).to_le_bytes());
        self.0.update(v);
        self
    }

    pub fn finish(self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).at_path(path)?)
        .at_path(path)?;
    Ok(h.finalize().to_hex().to_string())
}

#[derive(Serialize, Deserialize)]
struct EntryFile {
    kind: String,
    key: String,
    /// Path relative to the entry → blake3 of its bytes.
    files: BTreeMap<String, String>,
    data: Value,
}

/// An entry, found or just written.
pub struct Stored {
    pub key: String,
    pub dir: PathBuf,
    pub files: BTreeMap<String, String>,
    data: Value,
    /// Whether this build computed it.
    pub fresh: bool,
}

impl Stored {
    /// The entry's data with its file paths moved under `prefix` (a site-relative folder).
    pub fn placed<T: DeserializeOwned>(&self, prefix: &str) -> Result<T> {
        let text = self.data.to_string().replace(ENTRY, &format!("{prefix}/"));
        serde_json::from_str(&text).map_err(|e| Error::msg(format!("cache entry {}: {e}", self.dir.display())))
    }

    /// The blake3 of a file of the entry, by its placed path.
    pub fn hash_of(&self, prefix: &str, placed: &str) -> Option<String> {
        let rel = placed.strip_prefix(prefix)?.strip_prefix('/')?;
        self.files.get(rel).cloned()
    }

    /// Hard-links (or, across file systems, copies) every file into `site/prefix/`.
    pub fn link_into(&self, site: &Path, prefix: &str) -> Result<()> {
        let dest = site.join(prefix);
        for rel in self.files.keys() {
            let from = self.dir.join(rel);
            let to = dest.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).at_path(parent)?;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).at_path(&to)?;
            }
        }
        Ok(())
    }
}

/// Counts of what a build computed and reused.
#[derive(Debug, Default)]
pub struct Counts {
    pub entries_computed: AtomicUsize,
    pub entries_reused: AtomicUsize,
    pub files_computed: AtomicUsize,
    pub files_reused: AtomicUsize,
}

pub struct Cache {
    root: PathBuf,
    /// `--no-cache`: a private folder removed when the build ends.
    temporary: bool,
    pub counts: Counts,
    /// Keys used by this build, for `cache gc`.
    used: std::sync::Mutex<BTreeSet<String>>,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["entries", "tmp"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).at_path(&d)?;
        }
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            // Tells backup tools to skip the folder (https://bford.info/cachedir/).
            std::fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# cnnscope's artifact cache: safe to delete.\n",
            )
            .at_path(&tag)?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
            temporary: false,
            counts: Counts::default(),
            used: Default::default(),
        })
    }

    /// A cache that lives only for one build (`--no-cache`), in `folder` (which must not exist).
    pub fn temporary(folder: &Path) -> Result<Cache> {
        if folder.exists() {
            std::fs::remove_dir_all(folder).at_path(folder)?;
        }
        let mut c = Cache::open(folder)?;
        c.temporary = true;
        Ok(c)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    fn dir(&self, key: &str) -> PathBuf {
        self.root.join("entries").join(&key[..2]).join(key)
    }

    /// The entry under `key`, if present and readable (an unreadable one is treated as absent
    /// and replaced on the next put).
    pub fn get(&self, key: &str) -> Option<Stored> {
        let dir = self.dir(key);
        let text = std::fs::read_to_string(dir.join("entry.json")).ok()?;
        let e: EntryFile = serde_json::from_str(&text).ok()?;
        if e.key != key || !e.files.keys().all(|f| dir.join(f).is_file()) {
            return None;
        }
        Some(Stored {
            key: e.key,
            dir,
            files: e.files,
            data: e.data,
            fresh: false,
        })
    }

    /// Writes an entry: `compute` puts its files into the folder it is given and returns
    /// the data. The data is read back through JSON so that a fresh entry and a reused one
    /// give the pages the same numbers, bit for bit.
    pub fn put<T: Serialize>(&self, kind: &str, key: &str, compute: impl FnOnce(&Path) -> Result<T>) -> Result<Stored> {
        let tmp = self.root.join("tmp").join(format!(
            "{key}.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let tmp = PathBuf::from(tmp.to_string_lossy().replace(['(', ')'], ""));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).at_path(&tmp)?;
        }
        std::fs::create_dir_all(&tmp).at_path(&tmp)?;
        let result = (|| {
            let data = serde_json::to_value(compute(&tmp)?).map_err(|e| Error::msg(e.to_string()))?;
            let mut files = BTreeMap::new();
            for e in walkdir::WalkDir::new(&tmp).sort_by_file_name() {
                let e = e.map_err(|e| Error::msg(e.to_string()))?;
                if !e.file_type().is_file() {
                    continue;
                }
                let rel = e.path().strip_prefix(&tmp).expect("under tmp");
                let rel = rel.to_string_lossy().replace('\\', "/");
                files.insert(rel, hash_file(e.path())?);
                make_read_only(e.path())?;
            }
            let entry = EntryFile {
                kind: kind.to_string(),
                key: key.to_string(),
                files,
                data,
            };
            let text = serde_json::to_string(&entry).map_err(|e| Error::msg(e.to_string()))?;
            let p = tmp.join("entry.json");
            std::fs::write(&p, text).at_path(&p)?;
            let dir = self.dir(key);
            let parent = dir.parent().expect("entries/xx");
            std::fs::create_dir_all(parent).at_path(parent)?;
            if self.get(key).is_some() {
                // Another build wrote the same entry meanwhile: same inputs, same content.
                remove_all(&tmp)?;
                return Ok(());
            }
            if dir.exists() {
                // An unreadable entry (a valid one would have been reused).
                remove_all(&dir)?;
            }
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                if self.get(key).is_none() {
                    return Err(Error::io(&dir, e));
                }
                remove_all(&tmp)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let mut stored = self
            .get(key)
            .ok_or_else(|| Error::at(self.dir(key), "cache entry unreadable right after writing it"))?;
        stored.fresh = true;
        Ok(stored)
    }

    /// The entry under `key`, computed if absent; counts it as computed or reused.
    pub fn get_or_put<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        compute: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<Stored> {
        let stored = match self.get(key) {
            Some(s) => s,
            None => self.put(kind, key, compute)?,
        };
        self.record(&stored);
        Ok(stored)
    }

    /// Counts an entry as used by this build.
    pub fn record(&self, s: &Stored) {
        let (entries, files) = if s.fresh {
            (&self.counts.entries_computed, &self.counts.files_computed)
        } else {
            (&self.counts.entries_reused, &self.counts.files_reused)
        };
        entries.fetch_add(1, Ordering::Relaxed);
        files.fetch_add(s.files.len(), Ordering::Relaxed);
        self.used.lock().expect("not poisoned").insert(s.key.clone());
    }

    pub fn used(&self) -> BTreeSet<String> {
        self.used.lock().expect("not poisoned").clone()
    }

    /// Removes every entry not in `keep`, and leftovers of interrupted builds in `tmp/`.
    /// Returns (entries removed, bytes freed).
    pub fn gc(&self, keep: &BTreeSet<String>) -> Result<(usize, u64)> {
        let mut removed = 0;
        let mut bytes = 0;
        let tmp = self.root.join("tmp");
        for e in std::fs::read_dir(&tmp).at_path(&tmp)? {
            let p = e.at_path(&tmp)?.path();
            bytes += folder_size(&p);
            remove_all(&p)?;
        }
        let entries = self.root.join("entries");
        for shard in std::fs::read_dir(&entries).at_path(&entries)? {
            let shard = shard.at_path(&entries)?.path();
            if !shard.is_dir() {
                continue;
            }
            for e in std::fs::read_dir(&shard).at_path(&shard)? {
                let p = e.at_path(&shard)?.path();
                let key = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if !keep.contains(key) {
                    bytes += folder_size(&p);
                    remove_all(&p)?;
                    removed += 1;
                }
            }
            if std::fs::read_dir(&shard)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
            {
                let _ = std::fs::remove_dir(&shard);
            }
        }
        Ok((removed, bytes))
    }

    /// Number of entries and their total size.
    pub fn size(&self) -> (usize, u64) {
        let entries = self.root.join("entries");
        let mut n = 0;
        let mut bytes = 0;
        for e in walkdir::WalkDir::new(&entries)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            n += 1;
            bytes += folder_size(e.path());
        }
        (n, bytes)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if self.temporary {
            let _ = remove_all(&self.root);
        }
    }
}

fn folder_size(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn make_read_only(p: &Path) -> Result<()> {
    let mut perm = std::fs::metadata(p).at_path(p)?.permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(p, perm).at_path(p)
}

/// Removes a folder whose files are read-only (unlinking needs only the folder's permission
/// on Unix; elsewhere the files are made writable first).
fn remove_all(p: &Path) -> Result<()> {
    if p.is_dir() {
        if cfg!(not(unix)) {
            for e in walkdir::WalkDir::new(p).into_iter().flatten() {
                if e.file_type().is_file() {
                    let mut perm = e.metadata().map_err(|e| Error::msg(e.to_string()))?.permissions();
                    #[allow(clippy::permissions_set_readonly_false)]
                    perm.set_readonly(false);
                    let _ = std::fs::set_permissions(e.path(), perm);
                }
            }
        }
        std::fs::remove_dir_all(p).at_path(p)
    } else {
        std::fs::remove_file(p).at_path(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_run_together() {
        let a = KeyHasher::new("k").field("a", "bc").finish();
        let b = KeyHasher::new("k").field("ab", "c").finish();
        assert_ne!(a, b);
        assert_eq!(a, KeyHasher::new("k").field("a", "bc").finish());
    }

    #[test]
    fn put_then_get_places_paths() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = KeyHasher::new("t").finish();
        let s = cache
            .get_or_put("t", &key, |d| {
                std::fs::write(d.join("a.txt"), "x").unwrap();
                Ok(serde_json::json!({"file": format!("{ENTRY}a.txt")}))
            })
            .unwrap();
        assert!(s.fresh);
        let again = cache
            .get_or_put("t", &key, |_| -> Result<Value> { panic!("must be reused") })
            .unwrap();
        assert!(!again.fresh);
        let v: Value = again.placed("models/m").unwrap();
        assert_eq!(v["file"], "models/m/a.txt");
        assert_eq!(again.hash_of("models/m", "models/m/a.txt"), Some(hash_bytes(b"x")));
        let site = dir.path().join("site");
        again.link_into(&site, "models/m").unwrap();
        assert_eq!(std::fs::read_to_string(site.join("models/m/a.txt")).unwrap(), "x");
        assert_eq!(cache.gc(&BTreeSet::new()).unwrap().0, 1);
        assert!(cache.get(&key).is_none());
    }
}
