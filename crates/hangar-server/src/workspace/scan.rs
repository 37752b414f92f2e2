//! What a workspace directory holds now, cheaply enough to run after every run: a walk that
//! never follows symlinks (sandboxed code writes this directory), leaves out caches and VCS
//! folders (contract §6.3's list), and hashes only the files whose size, modification time or
//! inode changed since the last scan. The index that remembers them is per node and lives
//! beside the workspace, never inside it, so sandboxed code cannot forge it.
//!
//! A file rewritten within the same timestamp tick as the scan that indexed it, with the same
//! size, would look unchanged; as git does, entries modified less than [`RACY_WINDOW`] before
//! their scan are hashed again next time.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Directory names whose contents are never synced (caches, environments, VCS data).
const EXCLUDED_DIRS: &[&str] = &[
    "__pycache__",
    ".git",
    "node_modules",
    ".venv",
    "venv",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".eggs",
];
/// File name endings that are never synced.
const EXCLUDED_SUFFIXES: &[&str] = &[".pyc", ".pyo", ".DS_Store"];
/// Modifications this close to the scan that indexed them are re-checked by hashing.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Whether `path` (a directory when `is_dir`) is left out of sync.
pub fn excluded(path: &RelPath, is_dir: bool) -> bool {
    let name = path.file_name();
    if is_dir {
        EXCLUDED_DIRS.contains(&name) || name.ends_with(".egg-info")
    } else {
        EXCLUDED_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
    }
}

/// A regular file of the workspace and its content's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: RelPath,
    pub size: u64,
    pub sha256: String,
}

/// What one scan found, and how much hashing it took.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<LocalFile>,
    /// Files whose content was read and hashed (the others were known from the index).
    pub hashed: usize,
}

/// What the last scan knew of each file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    /// When the scan that wrote this index started (ns since the epoch).
    scanned_at: i128,
    entries: BTreeMap<String, Indexed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Indexed {
    size: u64,
    mtime: i128,
    ino: u64,
    sha256: String,
}

impl Index {
    /// The index at `path`; missing or unreadable means empty (everything is hashed once).
    pub fn load(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %path.display(), error = %err, "workspace index unreadable; rebuilding it");
                Self::default()
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Self::default(),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "workspace index unreadable; rebuilding it");
                Self::default()
            }
        }
    }

    /// Writes the index atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(path).map_err(|err| err.error)?;
        Ok(())
    }
}

/// Every synced file of `dir`, sorted by path, hashing only what changed since `index` was
/// written; `index` is brought up to date. Blocking: call it from a blocking task.
pub fn scan(dir: &WorkspaceDir, index: &mut Index) -> io::Result<Scan> {
    let started = now_ns();
    let racy_since = index.scanned_at - RACY_WINDOW.as_nanos() as i128;
    let walked = dir.walk(&excluded)?;
    let mut scan = Scan::default();
    let mut entries = BTreeMap::new();
    for (path, metadata) in walked {
        let key = path.to_string();
        let (size, mtime, ino) = (metadata.len(), mtime_ns(&metadata), metadata.ino());
        let known = index
            .entries
            .get(&key)
            .filter(|e| e.size == size && e.mtime == mtime && e.ino == ino && e.mtime < racy_since);
        let sha256 = match known {
            Some(entry) => entry.sha256.clone(),
            None => match hash_file(dir, &path) {
                Ok(sha) => {
                    scan.hashed += 1;
                    sha
                }
                // Deleted or swapped for a symlink while we walked: not a file any more.
                Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => {
                    continue;
                }
                Err(err) => return Err(err),
            },
        };
        entries.insert(
            key,
            Indexed {
                size,
                mtime,
                ino,
                sha256: sha256.clone(),
            },
        );
        scan.files.push(LocalFile { path, size, sha256 });
    }
    index.entries = entries;
    index.scanned_at = started;
    Ok(scan)
}

/// The SHA-256 of a workspace file, read without following symlinks.
pub fn hash_file(dir: &WorkspaceDir, path: &RelPath) -> io::Result<String> {
    let mut file = dir.open_file(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn mtime_ns(metadata: &std::fs::Metadata) -> i128 {
    i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec())
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn rel(path: &str) -> RelPath {
        RelPath::parse(path).unwrap()
    }

    /// Moves the last scan an hour later, so its entries are no longer racily clean.
    fn age(index: &mut Index) {
        index.scanned_at += 3_600 * 1_000_000_000_i128;
    }

    #[test]
    fn excluded_follows_the_contract_list() {
        for dir in [
            "__pycache__",
            "a/.git",
            "node_modules",
            "x/.venv",
            "pkg.egg-info",
            ".tox",
        ] {
            assert!(excluded(&rel(dir), true), "{dir}");
        }
        for file in ["m.pyc", "a/b.pyo", ".DS_Store"] {
            assert!(excluded(&rel(file), false), "{file}");
        }
        for kept in ["src", ".github", "git"] {
            assert!(!excluded(&rel(kept), true), "{kept}");
        }
        assert!(!excluded(&rel("notes.md"), false));
        assert!(!excluded(&rel(".git"), false), "a file named .git is kept");
    }

    #[test]
    fn unchanged_files_are_not_hashed_again_and_changes_are() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        fs::create_dir_all(root.join("src/__pycache__")).unwrap();
        fs::write(root.join("a.txt"), "alpha").unwrap();
        fs::write(root.join("src/b.py"), "print(1)").unwrap();
        fs::write(root.join("src/__pycache__/b.pyc"), "x").unwrap();
        fs::write(tmp.path().join("secret"), "host").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("link")).unwrap();
        let dir = WorkspaceDir::open(&root).unwrap();

        let mut index = Index::default();
        let first = scan(&dir, &mut index).unwrap();
        let paths: Vec<&str> = first.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "src/b.py"], "caches and symlinks are left out");
        assert_eq!(first.hashed, 2);
        assert_eq!(
            first.files[0].sha256,
            "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"
        );

        // Just scanned: racily clean, so hashed again.
        assert_eq!(scan(&dir, &mut index).unwrap().hashed, 2);
        age(&mut index);
        let path = tmp.path().join("index.json");
        index.save(&path).unwrap();
        let mut index = Index::load(&path);
        let again = scan(&dir, &mut index).unwrap();
        assert_eq!(again.hashed, 0, "nothing changed");
        assert_eq!(again.files, first.files);

        // Same size, new content (and so a new mtime or inode): hashed.
        age(&mut index);
        fs::write(root.join("a.txt"), "ALPHA").unwrap();
        fs::remove_file(root.join("src/b.py")).unwrap();
        let changed = scan(&dir, &mut index).unwrap();
        assert_eq!(changed.hashed, 1);
        assert_eq!(changed.files.len(), 1);
        assert_ne!(changed.files[0].sha256, first.files[0].sha256);
    }

    #[test]
    fn a_missing_or_corrupt_index_means_hashing_everything() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("index.json"), "{not json").unwrap();
        let index = Index::load(&tmp.path().join("index.json"));
        assert!(index.entries.is_empty());
        assert!(Index::load(&tmp.path().join("missing.json")).entries.is_empty());
    }
}
