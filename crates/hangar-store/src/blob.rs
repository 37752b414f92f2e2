//! Content-addressed blob storage over any [`object_store::ObjectStore`]: a local directory (the
//! embedded default), S3 or an S3-compatible server (production), or memory (tests).
//!
//! **Key layout.** A blob's key is `{prefix}/{tenant}/blobs/{sha256}`, where `sha256` is the
//! lowercase hex SHA-256 of its bytes. Tenant ids are validated [`TenantId`]s and digests are
//! checked to be exactly 64 lowercase hex characters before they become part of a key, so no
//! caller-supplied text can point a key elsewhere (`../x` is refused with
//! [`BlobError::InvalidDigest`] before any I/O). Tenants never share objects: the same bytes
//! stored by two tenants are two objects, and a tenant can only name its own.
//!
//! **Idempotent puts.** Bytes are hashed before anything is uploaded; when an object with that
//! key and size already exists the upload is skipped, so storing the same content again costs one
//! `HEAD` request. Large files go through [`BlobStore::put_file`] / [`BlobStore::put_stream`],
//! which read in bounded chunks and upload in parts (at most [`PART_SIZE`] ×
//! ([`MAX_PARTS_IN_FLIGHT`] + 1) bytes buffered); the bytes are hashed again while they are
//! uploaded and the upload is aborted if they no longer match, so a file changing underneath
//! never lands under the wrong key.
//!
//! **Integrity on read.** [`BlobStore::get`] and [`BlobStore::get_to_file`] recompute the SHA-256
//! and size of what the backend returns and answer [`BlobError::Corrupt`] on a mismatch;
//! `get_to_file` writes to a temporary file beside the target and renames it only once the content
//! is verified, so a corrupt blob never reaches the target path.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use hangar_protocol::TenantId;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Size of one uploaded part of a multipart upload (S3 requires at least 5 MiB per part).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent concurrently.
pub const MAX_PARTS_IN_FLIGHT: usize = 4;
/// Content up to this size is uploaded with a single `PUT`.
const SINGLE_PUT_MAX: u64 = PART_SIZE as u64;
/// Read buffer for files and spools.
const READ_CHUNK: usize = 1024 * 1024;
/// In-memory content larger than this is hashed on the blocking pool.
const INLINE_HASH_MAX: usize = 256 * 1024;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {sha} not found")]
    NotFound { sha: String },
    /// The stored object no longer matches its digest (tampering, bit rot, a truncated write).
    #[error("blob {sha} is corrupt: its content does not match its SHA-256")]
    Corrupt { sha: String },
    /// Not 64 lowercase hex characters; refused before any I/O.
    #[error("invalid blob digest {digest:?}: expected 64 lowercase hex characters")]
    InvalidDigest { digest: String },
    /// Reading the caller's file or stream, or writing the target file, failed.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// The object store failed or is misconfigured.
    #[error("blob store: {0}")]
    Backend(String),
}

pub type BlobResult<T> = std::result::Result<T, BlobError>;

/// A stored blob: its lowercase hex SHA-256 and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

/// Where S3 credentials come from.
#[derive(Clone)]
pub enum S3Credentials {
    /// The standard chain: `AWS_*` environment variables, web identity, ECS, then instance
    /// metadata.
    Chain,
    /// Fixed keys; nothing else (in particular no instance-metadata endpoint) is consulted.
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chain => f.write_str("Chain"),
            Self::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish_non_exhaustive(),
        }
    }
}

/// An S3 (or S3-compatible) bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// For S3-compatible stores (`AWS_ENDPOINT_URL`); `None` means AWS itself.
    pub endpoint: Option<String>,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`.
    pub path_style: bool,
    /// Allow a plain `http://` endpoint (local test servers).
    pub allow_http: bool,
    pub credentials: S3Credentials,
}

/// Content-addressed, per-tenant blob storage; cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl BlobStore {
    /// Blobs in `store`, with keys at its root (see [`BlobStore::with_prefix`]).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            prefix: Path::default(),
        }
    }

    /// Puts every key under `prefix` (`a/b` gives `a/b/{tenant}/blobs/{sha256}`).
    pub fn with_prefix(mut self, prefix: &str) -> BlobResult<Self> {
        self.prefix = Path::parse(prefix)
            .map_err(|e| BlobError::Backend(format!("invalid key prefix {prefix:?}: {e}")))?;
        Ok(self)
    }

    /// Blobs in process memory (tests).
    pub fn memory() -> Self {
        Self::new(Arc::new(InMemory::new()))
    }

    /// Blobs as files under `dir`, which is created when missing.
    pub fn local(dir: impl AsRef<FsPath>) -> BlobResult<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
            what: dir.display().to_string(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(backend)?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(store)))
    }

    /// Blobs in an S3 bucket. Builds the client only; nothing is contacted until the first request.
    pub fn s3(config: &S3Config) -> BlobResult<Self> {
        let builder = match &config.credentials {
            S3Credentials::Chain => AmazonS3Builder::from_env(),
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let builder = AmazonS3Builder::new()
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key);
                match session_token {
                    Some(token) => builder.with_token(token),
                    None => builder,
                }
            }
        };
        let mut builder = builder
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        Ok(Self::new(Arc::new(builder.build().map_err(backend)?)))
    }

    /// The underlying object store (for tests and maintenance tools).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of blob `sha` of `tenant`; refuses a malformed digest.
    pub fn key(&self, tenant: &TenantId, sha: &str) -> BlobResult<Path> {
        validate_digest(sha)?;
        Ok(self.tenant_dir(tenant).join(sha))
    }

    fn tenant_dir(&self, tenant: &TenantId) -> Path {
        self.prefix.clone().join(tenant.as_str()).join("blobs")
    }

    /// Stores `bytes`; skips the upload when the blob is already there.
    pub async fn put(&self, tenant: &TenantId, bytes: Bytes) -> BlobResult<BlobRef> {
        let blob = BlobRef {
            sha256: hash_bytes(bytes.clone()).await?,
            size: bytes.len() as u64,
        };
        let key = self.key(tenant, &blob.sha256)?;
        if self.stored_size(&key).await? != Some(blob.size) {
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(backend)?;
        }
        Ok(blob)
    }

    /// Stores the file at `path`, streamed: it is read once to hash it and, unless the blob is
    /// already stored, once more to upload it (in parts when large). Fails without storing
    /// anything if the file changes between the two reads.
    pub async fn put_file(&self, tenant: &TenantId, path: impl AsRef<FsPath>) -> BlobResult<BlobRef> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| io_error(&what, source))?;
        Ok(self.put_open(tenant, file, &what).await?.0)
    }

    /// [`BlobStore::put_file`] for a file already open for reading (from its start), e.g. one
    /// opened without following symlinks in a directory sandboxed code can write. `what` names
    /// it in errors. Also says whether it was uploaded (`false`: the blob was already stored).
    pub async fn put_open(
        &self,
        tenant: &TenantId,
        file: std::fs::File,
        what: &str,
    ) -> BlobResult<(BlobRef, bool)> {
        let (file, blob) = hash_file(file, what.to_owned()).await?;
        let key = self.key(tenant, &blob.sha256)?;
        if self.stored_size(&key).await? == Some(blob.size) {
            return Ok((blob, false));
        }
        self.upload(&key, tokio::fs::File::from_std(file), &blob, what)
            .await?;
        Ok((blob, true))
    }

    /// Stores the content of `stream` (an upload body, say) without holding it in memory: it is
    /// spooled to an anonymous temporary file while being hashed, then uploaded from there unless
    /// the blob is already stored.
    pub async fn put_stream<S, E>(&self, tenant: &TenantId, stream: S) -> BlobResult<BlobRef>
    where
        S: Stream<Item = std::result::Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        const WHAT: &str = "upload stream";
        let spool = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(|e| BlobError::Backend(e.to_string()))?
            .map_err(|source| io_error("temporary spool file", source))?;
        let mut spool = tokio::fs::File::from_std(spool);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| io_error(WHAT, io::Error::other(e)))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            spool
                .write_all(&chunk)
                .await
                .map_err(|source| io_error("temporary spool file", source))?;
        }
        let blob = BlobRef {
            sha256: hex::encode(hasher.finalize()),
            size,
        };
        let key = self.key(tenant, &blob.sha256)?;
        if self.stored_size(&key).await? == Some(blob.size) {
            return Ok(blob);
        }
        spool
            .flush()
            .await
            .map_err(|source| io_error("temporary spool file", source))?;
        spool
            .rewind()
            .await
            .map_err(|source| io_error("temporary spool file", source))?;
        self.upload(&key, spool, &blob, WHAT).await?;
        Ok(blob)
    }

    /// Uploads exactly `expected` from `reader` to `key`, hashing as it goes; nothing is stored if
    /// the bytes read do not match `expected`.
    async fn upload<R>(&self, key: &Path, mut reader: R, expected: &BlobRef, what: &str) -> BlobResult<()>
    where
        R: AsyncRead + Unpin,
    {
        let changed = || {
            io_error(
                what,
                io::Error::other("content changed while it was being stored"),
            )
        };
        if expected.size <= SINGLE_PUT_MAX {
            let mut content = Vec::with_capacity(expected.size as usize);
            // Read one byte more than expected so growth is noticed.
            (&mut reader)
                .take(expected.size + 1)
                .read_to_end(&mut content)
                .await
                .map_err(|source| io_error(what, source))?;
            let content = Bytes::from(content);
            if content.len() as u64 != expected.size || hash_bytes(content.clone()).await? != expected.sha256
            {
                return Err(changed());
            }
            self.store
                .put(key, PutPayload::from(content))
                .await
                .map_err(backend)?;
            return Ok(());
        }

        let upload = self.store.put_multipart(key).await.map_err(backend)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; READ_CHUNK];
        let outcome: BlobResult<()> = async {
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|source| io_error(what, source))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > expected.size {
                    return Err(changed());
                }
                hasher.update(&buf[..n]);
                writer
                    .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                    .await
                    .map_err(backend)?;
                writer.write(&buf[..n]);
            }
            if size != expected.size || hex::encode(hasher.finalize()) != expected.sha256 {
                return Err(changed());
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => writer.finish().await.map(drop).map_err(backend),
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %key, error = %abort, "aborting a multipart upload failed");
                }
                Err(e)
            }
        }
    }

    /// The content of blob `sha`, verified against its digest.
    pub async fn get(&self, tenant: &TenantId, sha: &str) -> BlobResult<Bytes> {
        let key = self.key(tenant, sha)?;
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|e| not_found_or_backend(e, sha))?;
        let stored_size = result.meta.size;
        let bytes = result.bytes().await.map_err(|e| not_found_or_backend(e, sha))?;
        if bytes.len() as u64 != stored_size || hash_bytes(bytes.clone()).await? != sha {
            return Err(BlobError::Corrupt { sha: sha.to_owned() });
        }
        Ok(bytes)
    }

    /// Writes blob `sha` to `path` (replacing it), streamed and verified: the content goes to a
    /// temporary file in the same directory, which is renamed to `path` only when its digest
    /// matches. On any error `path` is left as it was.
    pub async fn get_to_file(
        &self,
        tenant: &TenantId,
        sha: &str,
        path: impl AsRef<FsPath>,
    ) -> BlobResult<BlobRef> {
        let key = self.key(tenant, sha)?;
        let path = path.as_ref().to_owned();
        let what = path.display().to_string();
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|e| not_found_or_backend(e, sha))?;
        let stored_size = result.meta.size;

        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let temp = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".blob-")
                .suffix(".part")
                .tempfile_in(dir)
        })
        .await
        .map_err(|e| BlobError::Backend(e.to_string()))?
        .map_err(|source| io_error(&what, source))?;
        let handle = temp
            .as_file()
            .try_clone()
            .map_err(|source| io_error(&what, source))?;
        let mut file = tokio::fs::File::from_std(handle);

        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| not_found_or_backend(e, sha))?
        {
            size += chunk.len() as u64;
            if size > stored_size {
                return Err(BlobError::Corrupt { sha: sha.to_owned() });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|source| io_error(&what, source))?;
        }
        if size != stored_size || hex::encode(hasher.finalize()) != sha {
            // `temp` is removed when dropped.
            return Err(BlobError::Corrupt { sha: sha.to_owned() });
        }
        file.flush().await.map_err(|source| io_error(&what, source))?;
        drop(file);
        let target = path.clone();
        tokio::task::spawn_blocking(move || temp.persist(target))
            .await
            .map_err(|e| BlobError::Backend(e.to_string()))?
            .map_err(|e| io_error(&what, e.error))?;
        Ok(BlobRef {
            sha256: sha.to_owned(),
            size,
        })
    }

    /// Whether blob `sha` of `tenant` is stored (its content is not checked).
    pub async fn exists(&self, tenant: &TenantId, sha: &str) -> BlobResult<bool> {
        let key = self.key(tenant, sha)?;
        Ok(self.stored_size(&key).await?.is_some())
    }

    /// Removes blob `sha` of `tenant`; removing a missing blob succeeds.
    pub async fn delete(&self, tenant: &TenantId, sha: &str) -> BlobResult<()> {
        let key = self.key(tenant, sha)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// Every blob of `tenant`, sorted by digest, with the size stored (not verified). Objects under
    /// the tenant's prefix whose name is not a digest are skipped.
    pub async fn list(&self, tenant: &TenantId) -> BlobResult<Vec<BlobRef>> {
        let dir = self.tenant_dir(tenant);
        let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await.map_err(backend)?;
        let mut blobs: Vec<BlobRef> = metas
            .into_iter()
            .filter(|meta| meta.location.parts().count() == dir.parts().count() + 1)
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                validate_digest(name).ok()?;
                Some(BlobRef {
                    sha256: name.to_owned(),
                    size: meta.size,
                })
            })
            .collect();
        blobs.sort();
        Ok(blobs)
    }

    /// The size of the object at `key`, or `None` when there is none.
    async fn stored_size(&self, key: &Path) -> BlobResult<Option<u64>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }
}

/// Refuses anything but 64 lowercase hex characters.
pub fn validate_digest(sha: &str) -> BlobResult<()> {
    if sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        let digest: String = sha.chars().take(80).collect();
        Err(BlobError::InvalidDigest { digest })
    }
}

fn backend(e: object_store::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

fn not_found_or_backend(e: object_store::Error, sha: &str) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound { sha: sha.to_owned() },
        e => backend(e),
    }
}

fn io_error(what: &str, source: io::Error) -> BlobError {
    BlobError::Io {
        what: what.to_owned(),
        source,
    }
}

/// Lowercase hex SHA-256 of `bytes`; large content is hashed on the blocking pool.
async fn hash_bytes(bytes: Bytes) -> BlobResult<String> {
    if bytes.len() <= INLINE_HASH_MAX {
        return Ok(hex::encode(Sha256::digest(&bytes)));
    }
    tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&bytes)))
        .await
        .map_err(|e| BlobError::Backend(e.to_string()))
}

/// Digest and size of the file at `path`, read in chunks on the blocking pool.
/// Hashes `file` from its start, then rewinds it for the upload.
async fn hash_file(mut file: std::fs::File, what: String) -> BlobResult<(std::fs::File, BlobRef)> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(io_error(&what, source)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        io::Seek::rewind(&mut file).map_err(|source| io_error(&what, source))?;
        let blob = BlobRef {
            sha256: hex::encode(hasher.finalize()),
            size,
        };
        Ok((file, blob))
    })
    .await
    .map_err(|e| BlobError::Backend(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_64_lowercase_hex() {
        let good = "a".repeat(64);
        assert!(validate_digest(&good).is_ok());
        for bad in [
            "",
            "../x",
            &"A".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            &format!("{}g", "a".repeat(63)),
        ] {
            assert!(
                matches!(validate_digest(bad), Err(BlobError::InvalidDigest { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn keys_follow_the_layout() {
        let tenant: TenantId = "acme".parse().unwrap();
        let sha = "0".repeat(64);
        let plain = BlobStore::memory();
        assert_eq!(
            plain.key(&tenant, &sha).unwrap().as_ref(),
            format!("acme/blobs/{sha}")
        );
        let prefixed = BlobStore::memory().with_prefix("hangar/v1").unwrap();
        assert_eq!(
            prefixed.key(&tenant, &sha).unwrap().as_ref(),
            format!("hangar/v1/acme/blobs/{sha}")
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let creds = S3Credentials::Static {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("tok".into()),
        };
        let text = format!("{creds:?}");
        assert!(
            text.contains("AKID") && !text.contains("very-secret") && !text.contains("tok\""),
            "{text}"
        );
    }
}
