//! Host-side access to a workspace that sandboxed code can write.
//!
//! # Threat
//!
//! The server (often root) reads and writes files in a conversation's workspace directory — to
//! show files, accept uploads, collect artifacts — while untrusted code in the sandbox can fill
//! that same directory with symlinks (`evil -> /etc/shadow`, `dir -> /`), fifos that block a
//! reader forever, device nodes, and can swap any of them in between the host's checks and its
//! use. A host that resolves workspace paths with ordinary path-based calls would read or
//! overwrite host files on the sandbox's behalf.
//!
//! # Design
//!
//! * Paths are [`RelPath`]s: validated, relative, without `.`/`..`, empty components, NULs,
//!   backslashes or control characters.
//! * Every access resolves through `openat2(2)` relative to an `O_PATH` descriptor of the root,
//!   with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`: the
//!   kernel refuses, atomically during the lookup, to leave the root, to follow any symlink (even
//!   one pointing inside the workspace) or to cross a mount point. There is no check-then-use
//!   race because nothing is checked by path first.
//! * Reads open with `O_NONBLOCK | O_NOFOLLOW | O_NOCTTY` and check `fstat` of the opened
//!   descriptor before reading, so fifos, sockets and devices are refused without blocking.
//! * Writes go to a fresh temporary name in the same directory (`O_CREAT | O_EXCL`) and are
//!   renamed over the target, so a hard link or symlink placed at the target is replaced, never
//!   written through. Parent directories are created one component at a time with `mkdirat`
//!   beneath the root.
//! * Listings and walks never follow symlinks; they report them (listing) or skip them (walk).
//!
//! Hard links: a hard link in the workspace is an ordinary regular file beneath the root and is
//! read like one. Sandboxed code cannot use them to reach host files, because it can only link
//! files it can see, and host paths outside the workspace are not mounted in the sandbox.
//!
//! Names that are not valid [`RelPath`] components (not UTF-8, control characters, backslashes)
//! cannot be addressed; listings and walks skip them.
//!
//! New files and directories take the owner of the directory they are created in when the host
//! runs as root, so sandboxed code keeps being able to change them; replacing a file keeps its
//! owner and permission bits.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Longest path accepted, in bytes (`PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest path component accepted, in bytes (`NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// How every path beneath the root is resolved.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Why a string is not a [`RelPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is too long (at most 4096 bytes, 255 per component)")]
    TooLong,
    #[error("path must be relative to the workspace")]
    Absolute,
    #[error("path must not contain `.` or `..` components")]
    Dots,
    #[error("path must not contain NUL bytes")]
    Nul,
    #[error("path must use `/`, not `\\`")]
    Backslash,
    #[error("path must not contain control characters")]
    Control,
    #[error("path must not contain empty components (`a//b` or a trailing `/`)")]
    EmptyComponent,
}

/// A validated relative path inside a workspace: UTF-8, non-empty, at most 4096 bytes in total
/// and 255 per component, not absolute, with no `.`, `..` or empty components (so no `a//b` and
/// no trailing slash), and no NUL, backslash or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.contains('\0') {
            return Err(PathError::Nul);
        }
        if s.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        if s.starts_with('/') {
            return Err(PathError::Absolute);
        }
        if s.contains('\\') {
            return Err(PathError::Backslash);
        }
        if s.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        s.split('/').try_for_each(check_component)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its last component; `None` for a single component.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rsplit_once('/').map(|(parent, _)| Self(parent.to_owned()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, name)| name)
    }

    /// The components, first to last.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// `self/name`, validated like [`RelPath::parse`] (`name` may have several components).
    pub fn join(&self, name: &str) -> Result<RelPath, PathError> {
        Self::parse(&format!("{}/{name}", self.0))
    }
}

fn check_component(component: &str) -> Result<(), PathError> {
    match component {
        "" => Err(PathError::EmptyComponent),
        "." | ".." => Err(PathError::Dots),
        c if c.len() > MAX_COMPONENT_BYTES => Err(PathError::TooLong),
        _ => Ok(()),
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RelPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, PathError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RelPath {
    type Error = PathError;
    fn try_from(value: String) -> Result<Self, PathError> {
        Self::parse(&value)
    }
}

impl From<RelPath> for String {
    fn from(path: RelPath) -> Self {
        path.0
    }
}

/// What a directory entry is, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Fifo, socket or device node.
    Other,
}

impl EntryKind {
    fn of(metadata: &Metadata) -> Self {
        let kind = metadata.file_type();
        if kind.is_symlink() {
            Self::Symlink
        } else if kind.is_dir() {
            Self::Dir
        } else if kind.is_file() {
            Self::File
        } else {
            Self::Other
        }
    }
}

/// One entry of [`WorkspaceDir::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryInfo {
    /// The entry's name (a single path component).
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes (for a symlink, the length of its target).
    pub size: u64,
    pub modified: SystemTime,
}

/// A workspace root opened for host-side access. Every method stays beneath the root and never
/// follows symlinks; see the module documentation.
#[derive(Debug)]
pub struct WorkspaceDir {
    root: PathBuf,
    fd: OwnedFd,
}

impl WorkspaceDir {
    /// Opens the workspace root. `root` is trusted and resolved normally (symlinks in it are
    /// followed); it must be a directory.
    pub fn open(root: &Path) -> io::Result<Self> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open workspace {}: {e}", root.display()))
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            fd,
        })
    }

    /// The root as given to [`WorkspaceDir::open`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens a regular file for reading. Symlinks, directories, fifos, sockets and devices are
    /// refused (without blocking).
    pub fn open_file(&self, path: &RelPath) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC;
        let file = File::from(open_beneath(self.fd.as_fd(), path.as_str(), flags, path)?);
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(not_regular(path, &metadata));
        }
        Ok(file)
    }

    /// Reads a whole regular file; fails with [`io::ErrorKind::FileTooLarge`] if it holds more
    /// than `max_bytes`.
    pub fn read(&self, path: &RelPath, max_bytes: u64) -> io::Result<Vec<u8>> {
        let file = self.open_file(path)?;
        let size = file.metadata()?.len();
        if size > max_bytes {
            return Err(too_large(path, max_bytes));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // The sandbox may grow the file while we read: never take more than the limit.
        file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(path, max_bytes));
        }
        Ok(bytes)
    }

    /// Metadata of `path` itself, like `lstat`: a symlink reports itself, never its target.
    pub fn metadata(&self, path: &RelPath) -> io::Result<Metadata> {
        lstat_beneath(self.fd.as_fd(), path.as_str(), path)
    }

    /// Replaces `path` with `bytes`, creating missing parent directories. The bytes go to a
    /// temporary file in the same directory that is then renamed over `path`, so readers never
    /// see a partial file. Fails if `path` exists and is not a regular file (a symlink, a
    /// directory…).
    pub fn write(&self, path: &RelPath, bytes: &[u8]) -> io::Result<()> {
        let dir = self.make_dirs(path.parent().as_ref())?;
        let name = path.file_name();
        let existing = match lstat_beneath(dir.as_fd(), name, path) {
            Ok(metadata) if metadata.is_file() => Some(metadata),
            Ok(metadata) => return Err(not_replaceable(path, &metadata)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let tmp = temp_name();
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat2(
            dir.as_fd(),
            tmp.as_str(),
            flags,
            Mode::from_raw_mode(0o644),
            RESOLVE,
        )
        .map_err(|e| resolve_error(e, path))?;
        let result = fill_and_rename(File::from(fd), bytes, existing.as_ref(), &dir, &tmp, name);
        if result.is_err() {
            let _ = rustix::fs::unlinkat(dir.as_fd(), tmp.as_str(), AtFlags::empty());
        }
        result.map_err(|e| io::Error::new(e.kind(), format!("cannot write {path}: {e}")))
    }

    /// Creates `path` and its missing parents as directories.
    pub fn create_dir_all(&self, path: &RelPath) -> io::Result<()> {
        self.make_dirs(Some(path)).map(drop)
    }

    /// Removes a file, fifo, socket or symlink (a symlink itself, never its target). Directories
    /// are refused.
    pub fn remove_file(&self, path: &RelPath) -> io::Result<()> {
        let dir = self.open_dir_path(path.parent().as_ref(), OFlags::PATH)?;
        rustix::fs::unlinkat(dir.as_fd(), path.file_name(), AtFlags::empty())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot remove {path}: {e}")))
    }

    /// Lists a directory (the root for `None`), sorted by name, without following symlinks.
    /// Entries whose names are not valid [`RelPath`] components are left out.
    pub fn read_dir(&self, path: Option<&RelPath>) -> io::Result<Vec<DirEntryInfo>> {
        let entries = self.list(path)?;
        entries
            .into_iter()
            .map(|(name, metadata)| {
                Ok(DirEntryInfo {
                    kind: EntryKind::of(&metadata),
                    size: metadata.len(),
                    modified: metadata.modified()?,
                    name,
                })
            })
            .collect()
    }

    /// Every regular file beneath the root, recursively, sorted by path. Symlinks (to files or
    /// directories) and special files are not returned and never followed. Entries for which
    /// `skip(path, is_dir)` returns true are left out; for a directory, with everything in it.
    /// Entries that vanish or are replaced by symlinks while walking are skipped.
    pub fn walk(&self, skip: &dyn Fn(&RelPath, bool) -> bool) -> io::Result<Vec<(RelPath, Metadata)>> {
        let mut files = Vec::new();
        let mut pending: Vec<Option<RelPath>> = vec![None];
        while let Some(dir) = pending.pop() {
            let entries = match self.list(dir.as_ref()) {
                Ok(entries) => entries,
                Err(e) if dir.is_some() && vanished_or_swapped(&e) => continue,
                Err(e) => return Err(e),
            };
            for (name, metadata) in entries {
                let Ok(path) = child_path(dir.as_ref(), &name) else {
                    continue;
                };
                let kind = metadata.file_type();
                if kind.is_dir() && !skip(&path, true) {
                    pending.push(Some(path));
                } else if kind.is_file() && !skip(&path, false) {
                    files.push((path, metadata));
                }
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    /// Entries of a directory with their `lstat` metadata, sorted by name.
    fn list(&self, path: Option<&RelPath>) -> io::Result<Vec<(String, Metadata)>> {
        let dir = self.open_dir_path(path, OFlags::RDONLY)?;
        let shown = path.map_or_else(|| ".".to_owned(), ToString::to_string);
        let reader = Dir::read_from(dir.as_fd()).map_err(|e| context(e, &shown))?;
        let mut entries = Vec::new();
        for entry in reader {
            let entry = entry.map_err(|e| context(e, &shown))?;
            let Some(name) = valid_name(entry.file_name().to_bytes()) else {
                continue;
            };
            match lstat_beneath(dir.as_fd(), name, &shown) {
                Ok(metadata) => entries.push((name.to_owned(), metadata)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// Opens `path` (the root for `None`) as a directory, with `access` (`PATH` or `RDONLY`).
    fn open_dir_path(&self, path: Option<&RelPath>, access: OFlags) -> io::Result<OwnedFd> {
        let flags = access | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match path {
            Some(path) => open_beneath(self.fd.as_fd(), path.as_str(), flags, path),
            None => open_beneath(self.fd.as_fd(), ".", flags, &"."),
        }
    }

    /// Creates every missing directory of `path` one component at a time and returns an `O_PATH`
    /// descriptor of the last one (of the root for `None`).
    fn make_dirs(&self, path: Option<&RelPath>) -> io::Result<OwnedFd> {
        let mut current = self.open_dir_path(None, OFlags::PATH)?;
        let Some(path) = path else { return Ok(current) };
        for component in path.components() {
            match rustix::fs::mkdirat(current.as_fd(), component, Mode::from_raw_mode(0o755)) {
                Ok(()) => inherit_owner(current.as_fd(), component),
                Err(Errno::EXIST) => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot create {path}: {e}"))),
            }
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            current = open_beneath(current.as_fd(), component, flags, path)?;
        }
        Ok(current)
    }
}

/// `openat2` beneath `dir` with [`RESOLVE`]; errors name `shown`.
fn open_beneath(
    dir: BorrowedFd<'_>,
    path: &str,
    flags: OFlags,
    shown: &dyn fmt::Display,
) -> io::Result<OwnedFd> {
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags, Mode::empty(), RESOLVE) {
            // The kernel asks for a retry when a rename raced with the lookup.
            Err(Errno::AGAIN) if attempts < 3 => attempts += 1,
            result => return result.map_err(|e| resolve_error(e, shown)),
        }
    }
}

/// `lstat` of `path` beneath `dir`, through an `O_PATH | O_NOFOLLOW` descriptor (which for a
/// symlink refers to the link itself).
fn lstat_beneath(dir: BorrowedFd<'_>, path: &str, shown: &dyn fmt::Display) -> io::Result<Metadata> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    File::from(open_beneath(dir, path, flags, shown)?).metadata()
}

/// Writes `bytes` to the temporary `file`, gives it the mode and owner of the file it replaces
/// (or the directory's owner), and renames it to `name`.
fn fill_and_rename(
    mut file: File,
    bytes: &[u8],
    existing: Option<&Metadata>,
    dir: &OwnedFd,
    tmp: &str,
    name: &str,
) -> io::Result<()> {
    file.write_all(bytes)?;
    match existing {
        Some(old) => {
            file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o777))?;
            chown_if_root(&file, old.uid(), old.gid());
        }
        None => {
            if let Ok(parent) = rustix::fs::fstat(dir.as_fd()) {
                chown_if_root(&file, parent.st_uid, parent.st_gid);
            }
        }
    }
    drop(file);
    rustix::fs::renameat(dir.as_fd(), tmp, dir.as_fd(), name).map_err(io::Error::from)
}

/// Best effort: only root can give files away, and failing to is harmless.
fn chown_if_root(file: &File, uid: u32, gid: u32) {
    if rustix::process::geteuid().is_root() {
        let _ = std::os::unix::fs::fchown(file, Some(uid), Some(gid));
    }
}

/// Gives the directory `name`, just created in `parent`, the owner of `parent` (as root only).
fn inherit_owner(parent: BorrowedFd<'_>, name: &str) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    if let Ok(stat) = rustix::fs::fstat(parent) {
        let owner = rustix::fs::Uid::from_raw(stat.st_uid);
        let group = rustix::fs::Gid::from_raw(stat.st_gid);
        // If the sandbox swapped in a symlink meanwhile, this changes the link, not its target.
        let _ = rustix::fs::chownat(parent, name, Some(owner), Some(group), AtFlags::SYMLINK_NOFOLLOW);
    }
}

/// A fresh, unpredictable name for a temporary file (created with `O_EXCL`).
fn temp_name() -> String {
    format!(
        ".hangar-tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// `name` if it is a valid single component (so the entry can be addressed by a [`RelPath`]).
fn valid_name(name: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(name).ok()?;
    if name == "." || name == ".." {
        return None;
    }
    RelPath::parse(name).ok().map(|_| name)
}

fn child_path(dir: Option<&RelPath>, name: &str) -> Result<RelPath, PathError> {
    match dir {
        Some(dir) => dir.join(name),
        None => RelPath::parse(name),
    }
}

/// A directory that disappeared, or was replaced by a symlink or file, during a walk.
fn vanished_or_swapped(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::NotADirectory
    )
}

/// Maps `openat2` errors to messages that say which rule refused the path.
fn resolve_error(errno: Errno, path: &dyn fmt::Display) -> io::Error {
    match errno {
        Errno::LOOP => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to follow a symlink inside the workspace: {path}"),
        ),
        Errno::XDEV => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to leave the workspace or cross a mount point: {path}"),
        ),
        Errno::NOENT => io::Error::new(
            io::ErrorKind::NotFound,
            format!("not found in the workspace: {path}"),
        ),
        Errno::NOSYS => io::Error::new(
            io::ErrorKind::Unsupported,
            "openat2 is not available: Linux 5.6 or newer is needed for safe workspace access",
        ),
        other => context(other, path),
    }
}

fn context(errno: Errno, path: &dyn fmt::Display) -> io::Error {
    io::Error::new(errno.kind(), format!("{path}: {errno}"))
}

fn not_regular(path: &RelPath, metadata: &Metadata) -> io::Error {
    let kind = if metadata.is_dir() {
        io::ErrorKind::IsADirectory
    } else {
        io::ErrorKind::InvalidInput
    };
    io::Error::new(
        kind,
        format!("not a regular file: {path} ({})", describe(metadata)),
    )
}

fn not_replaceable(path: &RelPath, metadata: &Metadata) -> io::Error {
    let kind = if metadata.is_dir() {
        io::ErrorKind::IsADirectory
    } else {
        io::ErrorKind::PermissionDenied
    };
    io::Error::new(
        kind,
        format!(
            "refusing to replace {path}: it is a {}, not a regular file",
            describe(metadata)
        ),
    )
}

fn too_large(path: &RelPath, max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{path} is larger than the limit of {max_bytes} bytes"),
    )
}

fn describe(metadata: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    match EntryKind::of(metadata) {
        EntryKind::File => "regular file",
        EntryKind::Dir => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::Other if kind.is_fifo() => "fifo",
        EntryKind::Other if kind.is_socket() => "socket",
        EntryKind::Other => "device",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    /// A temporary directory holding the workspace `ws` and a sibling `outside` the sandbox
    /// must never reach.
    struct Fixture {
        _tmp: tempfile::TempDir,
        ws: WorkspaceDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host secret").unwrap();
        let ws = WorkspaceDir::open(&root).unwrap();
        Fixture {
            _tmp: tmp,
            ws,
            root,
            outside,
        }
    }

    fn kind(result: io::Result<impl fmt::Debug>) -> io::ErrorKind {
        result.unwrap_err().kind()
    }

    #[test]
    fn rel_path_accepts_ordinary_paths() {
        for ok in [
            "a",
            "a/b/c.txt",
            ".hidden",
            "a/.b",
            "...",
            "a..b/c",
            "ünï cødé/文件 名.txt",
            "-rf",
        ] {
            assert_eq!(RelPath::parse(ok).unwrap().as_str(), ok);
        }
        let long_component = "x".repeat(255);
        assert!(RelPath::parse(&long_component).is_ok());
        let long_path = vec!["y".repeat(200); 20].join("/");
        assert!(long_path.len() <= 4096 && RelPath::parse(&long_path).is_ok());
    }

    #[test]
    fn rel_path_refuses_tricks() {
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("/", PathError::Absolute),
            ("..", PathError::Dots),
            ("../x", PathError::Dots),
            ("a/../../x", PathError::Dots),
            ("a/..", PathError::Dots),
            (".", PathError::Dots),
            ("./a", PathError::Dots),
            ("a/./b", PathError::Dots),
            ("a//b", PathError::EmptyComponent),
            ("a/", PathError::EmptyComponent),
            ("a\0b", PathError::Nul),
            ("a\\..\\b", PathError::Backslash),
            ("a\nb", PathError::Control),
            ("a\tb", PathError::Control),
            ("a\u{1b}[31m", PathError::Control),
            ("a\u{85}", PathError::Control),
        ];
        for (input, expected) in cases {
            assert_eq!(RelPath::parse(input), Err(expected), "{input:?}");
        }
        assert_eq!(RelPath::parse(&"x".repeat(256)), Err(PathError::TooLong));
        assert_eq!(
            RelPath::parse(&format!("a/{}", "x".repeat(256))),
            Err(PathError::TooLong)
        );
        assert_eq!(
            RelPath::parse(&vec!["y"; 2049].join("/")),
            Err(PathError::TooLong)
        );
        assert_eq!(
            PathError::Absolute.to_string(),
            "path must be relative to the workspace"
        );
    }

    #[test]
    fn rel_path_parts() {
        let path = rel("a/b/c.txt");
        assert_eq!(path.file_name(), "c.txt");
        assert_eq!(path.parent(), Some(rel("a/b")));
        assert_eq!(rel("a/b").parent(), Some(rel("a")));
        assert_eq!(rel("a").parent(), None);
        assert_eq!(rel("a").file_name(), "a");
        assert_eq!(path.components().collect::<Vec<_>>(), ["a", "b", "c.txt"]);
        assert_eq!(rel("a").join("b").unwrap(), rel("a/b"));
        assert_eq!(rel("a").join(".."), Err(PathError::Dots));
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, "\"a/b/c.txt\"");
        assert_eq!(serde_json::from_str::<RelPath>(&json).unwrap(), path);
        assert!(serde_json::from_str::<RelPath>("\"../x\"").is_err());
        assert_eq!("a/b".parse::<RelPath>().unwrap(), rel("a/b"));
    }

    #[test]
    fn open_requires_a_directory() {
        let f = fixture();
        assert_eq!(f.ws.root(), f.root);
        assert!(WorkspaceDir::open(&f.outside.join("secret")).is_err());
        assert_eq!(
            kind(WorkspaceDir::open(&f.root.join("missing"))),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn symlink_to_a_host_file_is_not_followed() {
        let f = fixture();
        symlink("/etc/passwd", f.root.join("evil")).unwrap();
        symlink(f.outside.join("secret"), f.root.join("evil2")).unwrap();
        for name in ["evil", "evil2"] {
            let error = f.ws.open_file(&rel(name)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
            assert!(
                error.to_string().contains("refusing to follow a symlink"),
                "{error}"
            );
            assert_eq!(
                kind(f.ws.read(&rel(name), 1 << 20)),
                io::ErrorKind::PermissionDenied
            );
            let metadata = f.ws.metadata(&rel(name)).unwrap();
            assert!(metadata.file_type().is_symlink());
        }
    }

    #[test]
    fn symlinks_pointing_inside_are_refused_too() {
        let f = fixture();
        std::fs::write(f.root.join("real.txt"), "inside").unwrap();
        symlink("real.txt", f.root.join("alias.txt")).unwrap();
        std::fs::create_dir(f.root.join("dir")).unwrap();
        symlink("dir", f.root.join("dir-alias")).unwrap();
        assert_eq!(
            kind(f.ws.read(&rel("alias.txt"), 100)),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind(f.ws.write(&rel("dir-alias/x"), b"x")),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(f.ws.read(&rel("real.txt"), 100).unwrap(), b"inside");
    }

    #[test]
    fn symlinked_directory_is_not_traversed() {
        let f = fixture();
        symlink("/etc", f.root.join("d")).unwrap();
        assert_eq!(
            kind(f.ws.read(&rel("d/passwd"), 1 << 20)),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind(f.ws.open_file(&rel("d/passwd"))),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind(f.ws.metadata(&rel("d/passwd"))),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind(f.ws.read_dir(Some(&rel("d")))),
            io::ErrorKind::PermissionDenied
        );
        assert!(f.ws.metadata(&rel("d")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn hard_links_are_ordinary_files() {
        let f = fixture();
        std::fs::write(f.root.join("original"), "linked").unwrap();
        std::fs::hard_link(f.root.join("original"), f.root.join("hardlink")).unwrap();
        assert_eq!(f.ws.read(&rel("hardlink"), 100).unwrap(), b"linked");
        // Writing replaces the entry; the other name keeps the old content.
        f.ws.write(&rel("hardlink"), b"new").unwrap();
        assert_eq!(std::fs::read(f.root.join("original")).unwrap(), b"linked");
        assert_eq!(f.ws.read(&rel("hardlink"), 100).unwrap(), b"new");
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let f = fixture();
        nix::unistd::mkfifo(&f.root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let ws = WorkspaceDir::open(&f.root).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let open = ws.open_file(&rel("pipe")).map(drop).map_err(|e| e.kind());
            let read = ws.read(&rel("pipe"), 10).map(drop).map_err(|e| e.kind());
            let _ = tx.send((open, read));
        });
        let (open, read) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("reading a fifo blocked");
        assert_eq!(open, Err(io::ErrorKind::InvalidInput));
        assert_eq!(read, Err(io::ErrorKind::InvalidInput));
        let entries = f.ws.read_dir(None).unwrap();
        assert_eq!(entries[0].kind, EntryKind::Other);
    }

    #[test]
    fn directories_are_not_files() {
        let f = fixture();
        f.ws.create_dir_all(&rel("sub")).unwrap();
        assert_eq!(kind(f.ws.open_file(&rel("sub"))), io::ErrorKind::IsADirectory);
        assert_eq!(kind(f.ws.write(&rel("sub"), b"x")), io::ErrorKind::IsADirectory);
        assert!(f.ws.remove_file(&rel("sub")).is_err());
        assert!(f.root.join("sub").is_dir());
    }

    #[test]
    fn write_through_a_symlinked_parent_is_refused() {
        let f = fixture();
        symlink(&f.outside, f.root.join("link")).unwrap();
        symlink("../outside", f.root.join("relative")).unwrap();
        for path in ["link/planted", "relative/planted", "link/new/deeper"] {
            let error = f.ws.write(&rel(path), b"pwned").unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{path}: {error}");
            assert_eq!(
                kind(f.ws.create_dir_all(&rel(path))),
                io::ErrorKind::PermissionDenied
            );
        }
        let outside: Vec<_> = std::fs::read_dir(&f.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["secret"]);
    }

    #[test]
    fn write_over_a_symlink_is_refused() {
        let f = fixture();
        let target = f.outside.join("secret");
        symlink(&target, f.root.join("victim")).unwrap();
        let error = f.ws.write(&rel("victim"), b"pwned").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied, "{error}");
        assert!(error.to_string().contains("symlink"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "host secret");
        assert!(
            std::fs::symlink_metadata(f.root.join("victim"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn writes_create_parents_and_replace_atomically() {
        let f = fixture();
        f.ws.write(&rel("a/b/c/file.txt"), b"one").unwrap();
        assert_eq!(f.ws.read(&rel("a/b/c/file.txt"), 100).unwrap(), b"one");
        std::fs::set_permissions(
            f.root.join("a/b/c/file.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        f.ws.write(&rel("a/b/c/file.txt"), b"two, longer").unwrap();
        assert_eq!(
            std::fs::read(f.root.join("a/b/c/file.txt")).unwrap(),
            b"two, longer"
        );
        let mode = f.ws.metadata(&rel("a/b/c/file.txt")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "replacing keeps the permission bits");
        f.ws.write(&rel("empty"), b"").unwrap();
        assert_eq!(f.ws.read(&rel("empty"), 0).unwrap(), b"");
        // No temporary files are left behind.
        let names: Vec<_> =
            f.ws.read_dir(Some(&rel("a/b/c")))
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
        assert_eq!(names, ["file.txt"]);
        f.ws.create_dir_all(&rel("x/y/z")).unwrap();
        f.ws.create_dir_all(&rel("x/y/z")).unwrap();
        assert!(f.root.join("x/y/z").is_dir());
        // A file in the way of a directory.
        assert!(f.ws.create_dir_all(&rel("empty/sub")).is_err());
        assert!(f.ws.write(&rel("empty/sub"), b"x").is_err());
    }

    #[test]
    fn read_respects_max_bytes() {
        let f = fixture();
        f.ws.write(&rel("ten"), b"0123456789").unwrap();
        assert_eq!(f.ws.read(&rel("ten"), 10).unwrap(), b"0123456789");
        let error = f.ws.read(&rel("ten"), 9).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert!(error.to_string().contains("limit of 9 bytes"), "{error}");
        assert_eq!(kind(f.ws.read(&rel("missing"), 9)), io::ErrorKind::NotFound);
    }

    #[test]
    fn remove_file_removes_symlinks_not_targets() {
        let f = fixture();
        symlink(f.outside.join("secret"), f.root.join("link")).unwrap();
        f.ws.remove_file(&rel("link")).unwrap();
        assert!(f.outside.join("secret").exists());
        assert!(std::fs::symlink_metadata(f.root.join("link")).is_err());
        f.ws.write(&rel("d/file"), b"x").unwrap();
        f.ws.remove_file(&rel("d/file")).unwrap();
        assert_eq!(kind(f.ws.remove_file(&rel("d/file"))), io::ErrorKind::NotFound);
        symlink(&f.outside, f.root.join("dirlink")).unwrap();
        assert_eq!(
            kind(f.ws.remove_file(&rel("dirlink/secret"))),
            io::ErrorKind::PermissionDenied
        );
        assert!(f.outside.join("secret").exists());
    }

    #[test]
    fn read_dir_reports_without_following() {
        let f = fixture();
        f.ws.write(&rel("file.txt"), b"12345").unwrap();
        f.ws.create_dir_all(&rel("dir")).unwrap();
        symlink("/etc", f.root.join("link")).unwrap();
        std::fs::write(f.root.join("bad\nname"), "x").unwrap();
        let entries = f.ws.read_dir(None).unwrap();
        let summary: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            summary,
            [
                ("dir", EntryKind::Dir),
                ("file.txt", EntryKind::File),
                ("link", EntryKind::Symlink)
            ]
        );
        assert_eq!(entries[1].size, 5);
        assert!(entries[1].modified > SystemTime::UNIX_EPOCH);
        assert!(f.ws.read_dir(Some(&rel("dir"))).unwrap().is_empty());
    }

    #[test]
    fn walk_returns_regular_files_only() {
        let f = fixture();
        for path in [
            "a.txt",
            "src/main.rs",
            "src/deep/er/x.py",
            ".git/HEAD",
            "node_modules/m/i.js",
        ] {
            f.ws.write(&rel(path), path.as_bytes()).unwrap();
        }
        symlink("/etc", f.root.join("etc-link")).unwrap();
        symlink("a.txt", f.root.join("src/a-link")).unwrap();
        symlink("../src", f.root.join("src/deep/loop")).unwrap();
        nix::unistd::mkfifo(&f.root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let skip =
            |path: &RelPath, is_dir: bool| is_dir && [".git", "node_modules"].contains(&path.file_name());
        let files = f.ws.walk(&skip).unwrap();
        let paths: Vec<_> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a.txt", "src/deep/er/x.py", "src/main.rs"]);
        assert_eq!(files[2].1.len(), "src/main.rs".len() as u64);
        let everything = f.ws.walk(&|_, _| false).unwrap();
        assert_eq!(everything.len(), 5);
        let no_python =
            f.ws.walk(&|p, is_dir| !is_dir && p.as_str().ends_with(".py"))
                .unwrap();
        assert_eq!(no_python.len(), 4);
    }
}
