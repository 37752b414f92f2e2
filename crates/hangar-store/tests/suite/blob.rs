//! The blob store suite: every test runs against memory, a local directory and a real
//! S3-compatible server (`TEST_S3_URL`, started by `./scripts/test`; the S3 tests fail when it is
//! unset rather than skip).

use std::fmt;
use std::future::Future;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use hangar_protocol::TenantId;
use hangar_store::{BlobError, BlobRef, BlobStore, S3Config, S3Credentials};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::tid;

/// `blob_test!(name, |fx| async move { ... })` expands to a module `name` with three tests,
/// `memory`, `local` and `s3`, each running the body against a fresh, empty store.
macro_rules! blob_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use pretty_assertions::{assert_eq, assert_ne};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                run(Kind::Memory, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                run(Kind::Local, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                run(Kind::S3, $body).await;
            }
        }
    };
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    Local,
    S3,
}

/// A blob store over a backend that counts uploads, plus direct access to that backend.
struct Fixture {
    blobs: BlobStore,
    /// The backend itself (uploads here are not counted).
    raw: Arc<dyn ObjectStore>,
    puts: Arc<AtomicUsize>,
    /// Scratch space for files (and, for `Local`, the store's directory).
    dir: TempDir,
}

impl Fixture {
    async fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = match kind {
            Kind::Memory => BlobStore::memory(),
            Kind::Local => BlobStore::local(dir.path().join("store")).unwrap(),
            Kind::S3 => s3_store().await,
        };
        let raw = Arc::clone(base.object_store());
        let puts = Arc::new(AtomicUsize::new(0));
        let counting = Counting {
            inner: Arc::clone(&raw),
            puts: Arc::clone(&puts),
        };
        let blobs = BlobStore::new(Arc::new(counting)).with_prefix("hangar").unwrap();
        Self {
            blobs,
            raw,
            puts,
            dir,
        }
    }

    fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }

    /// Every key in the backend.
    async fn keys(&self) -> Vec<String> {
        let metas: Vec<ObjectMeta> = self.raw.list(None).try_collect().await.unwrap();
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        keys
    }
}

async fn run<F, Fut>(kind: Kind, body: F)
where
    F: FnOnce(Arc<Fixture>) -> Fut,
    Fut: Future<Output = ()>,
{
    let fixture = Arc::new(Fixture::new(kind).await);
    body(Arc::clone(&fixture)).await;
    drop(fixture);
}

/// A store on `TEST_S3_URL` with a bucket of its own, reached with fixed test credentials only.
async fn s3_store() -> BlobStore {
    let url = std::env::var("TEST_S3_URL").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "TEST_S3_URL is not set: run ./scripts/test, or start an S3-compatible server \
         (moto_server -H 127.0.0.1 -p 5055) and set TEST_S3_URL=http://127.0.0.1:5055"
    );
    let url = url.trim_end_matches('/').to_owned();
    let bucket = format!("hangar-test-{}", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .put(format!("{url}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating bucket on {url} (is moto_server running?): {e}"));
    assert!(
        response.status().is_success(),
        "creating bucket {bucket}: {}",
        response.status()
    );
    BlobStore::s3(&S3Config {
        bucket,
        region: "us-east-1".to_owned(),
        endpoint: Some(url),
        path_style: true,
        allow_http: true,
        credentials: S3Credentials::Static {
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
            session_token: None,
        },
    })
    .unwrap()
}

/// Passes everything through to `inner`, counting the uploads started (single or multipart).
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    puts: Arc<AtomicUsize>,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn blob_ref(bytes: &[u8]) -> BlobRef {
    BlobRef {
        sha256: sha(bytes),
        size: bytes.len() as u64,
    }
}

/// `len` deterministic pseudo-random bytes (xorshift), so no two parts look alike.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn key_of(tenant: &TenantId, sha: &str) -> String {
    format!("hangar/{}/blobs/{sha}", tenant.as_str())
}

#[track_caller]
fn assert_corrupt<T: fmt::Debug>(result: Result<T, BlobError>, expected_sha: &str) {
    match result {
        Err(BlobError::Corrupt { sha }) => assert_eq!(sha, expected_sha),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: fmt::Debug>(result: Result<T, BlobError>) {
    assert!(
        matches!(result, Err(BlobError::NotFound { .. })),
        "expected NotFound, got {result:?}"
    );
}

#[track_caller]
fn assert_invalid_digest<T: fmt::Debug>(result: Result<T, BlobError>) {
    assert!(
        matches!(result, Err(BlobError::InvalidDigest { .. })),
        "expected InvalidDigest, got {result:?}"
    );
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &FsPath) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

blob_test!(round_trip, |fx: Arc<Fixture>| async move {
    let acme = tid("acme");
    let blob = fx.blobs.put(&acme, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(blob, blob_ref(b"hello"));
    assert_eq!(
        blob.sha256,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(
        fx.blobs.get(&acme, &blob.sha256).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert!(fx.blobs.exists(&acme, &blob.sha256).await.unwrap());
    assert_eq!(fx.keys().await, vec![key_of(&acme, &blob.sha256)]);

    let empty = fx.blobs.put(&acme, Bytes::new()).await.unwrap();
    assert_eq!(empty, blob_ref(b""));
    assert_eq!(fx.blobs.get(&acme, &empty.sha256).await.unwrap(), Bytes::new());

    let missing = sha(b"never stored");
    assert!(!fx.blobs.exists(&acme, &missing).await.unwrap());
    assert_not_found(fx.blobs.get(&acme, &missing).await);
    let target = fx.dir.path().join("missing.txt");
    assert_not_found(fx.blobs.get_to_file(&acme, &missing, &target).await);
    assert!(!target.exists());

    let streamed = fx
        .blobs
        .put_stream(
            &acme,
            futures::stream::iter([
                Ok::<_, std::io::Error>(Bytes::from_static(b"hel")),
                Ok(Bytes::from_static(b"lo")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(streamed, blob);
});

blob_test!(same_bytes_are_uploaded_once, |fx: Arc<Fixture>| async move {
    let acme = tid("acme");
    let content = noise(100_000, 1);
    let first = fx.blobs.put(&acme, Bytes::from(content.clone())).await.unwrap();
    assert_eq!(fx.puts(), 1);
    let second = fx.blobs.put(&acme, Bytes::from(content.clone())).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(fx.puts(), 1, "the second put uploaded again");

    let file = fx.dir.path().join("same.bin");
    std::fs::write(&file, &content).unwrap();
    assert_eq!(fx.blobs.put_file(&acme, &file).await.unwrap(), first);
    let stream = futures::stream::iter(
        content
            .chunks(7_000)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c))),
    );
    assert_eq!(fx.blobs.put_stream(&acme, stream).await.unwrap(), first);
    assert_eq!(
        fx.puts(),
        1,
        "put_file or put_stream uploaded a stored blob again"
    );
    assert_eq!(fx.keys().await, vec![key_of(&acme, &first.sha256)]);

    // A stored object of the wrong size is replaced.
    fx.raw
        .put(
            &Path::from(key_of(&acme, &first.sha256)),
            PutPayload::from_static(b"short"),
        )
        .await
        .unwrap();
    fx.blobs.put(&acme, Bytes::from(content.clone())).await.unwrap();
    assert_eq!(fx.puts(), 2);
    assert_eq!(
        fx.blobs.get(&acme, &first.sha256).await.unwrap(),
        Bytes::from(content)
    );
});

blob_test!(tenants_are_isolated, |fx: Arc<Fixture>| async move {
    let (a, b) = (tid("tenant-a"), tid("tenant-b"));
    let blob_a = fx
        .blobs
        .put(&a, Bytes::from_static(b"shared bytes"))
        .await
        .unwrap();
    let blob_b = fx
        .blobs
        .put(&b, Bytes::from_static(b"shared bytes"))
        .await
        .unwrap();
    assert_eq!(blob_a, blob_b);
    assert_eq!(fx.puts(), 2, "each tenant stores its own copy");
    let mut expected = vec![key_of(&a, &blob_a.sha256), key_of(&b, &blob_b.sha256)];
    expected.sort();
    assert_eq!(fx.keys().await, expected);

    let only_b = fx.blobs.put(&b, Bytes::from_static(b"b's secret")).await.unwrap();
    assert!(!fx.blobs.exists(&a, &only_b.sha256).await.unwrap());
    assert_not_found(fx.blobs.get(&a, &only_b.sha256).await);
    assert_not_found(
        fx.blobs
            .get_to_file(&a, &only_b.sha256, fx.dir.path().join("leak"))
            .await,
    );
    assert!(!fx.dir.path().join("leak").exists());

    fx.blobs.delete(&a, &blob_a.sha256).await.unwrap();
    assert_eq!(
        fx.blobs.get(&b, &blob_b.sha256).await.unwrap(),
        Bytes::from_static(b"shared bytes")
    );
    assert_eq!(fx.blobs.list(&a).await.unwrap(), Vec::<BlobRef>::new());
    assert_eq!(fx.blobs.list(&b).await.unwrap().len(), 2);
});

blob_test!(tampered_blobs_are_corrupt, |fx: Arc<Fixture>| async move {
    let acme = tid("acme");
    let original = b"the agent wrote this".to_vec();
    let blob = fx.blobs.put(&acme, Bytes::from(original.clone())).await.unwrap();
    let key = Path::from(key_of(&acme, &blob.sha256));
    let out = fx.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let kept = out.join("kept.txt");
    std::fs::write(&kept, b"previous content").unwrap();

    // Same size, other bytes; then other size; then a bigger 10 MB object (multi-chunk stream).
    for tampered in [
        b"THE AGENT WROTE THIS".to_vec(),
        b"x".to_vec(),
        noise(10 << 20, 7),
    ] {
        fx.raw.put(&key, PutPayload::from(tampered)).await.unwrap();
        assert!(fx.blobs.exists(&acme, &blob.sha256).await.unwrap());
        assert_corrupt(fx.blobs.get(&acme, &blob.sha256).await, &blob.sha256);
        let fresh = out.join("fresh.txt");
        assert_corrupt(
            fx.blobs.get_to_file(&acme, &blob.sha256, &fresh).await,
            &blob.sha256,
        );
        assert!(!fresh.exists(), "a corrupt blob reached the target path");
        assert_corrupt(
            fx.blobs.get_to_file(&acme, &blob.sha256, &kept).await,
            &blob.sha256,
        );
        assert_eq!(std::fs::read(&kept).unwrap(), b"previous content");
        assert_eq!(
            entries(&out),
            vec!["kept.txt".to_owned()],
            "temporary files were left behind"
        );
    }

    // Putting the content again repairs the blob when the size differs.
    fx.blobs.put(&acme, Bytes::from(original.clone())).await.unwrap();
    fx.blobs.get_to_file(&acme, &blob.sha256, &kept).await.unwrap();
    assert_eq!(std::fs::read(&kept).unwrap(), original);
});

blob_test!(invalid_digests_are_refused, |fx: Arc<Fixture>| async move {
    let acme = tid("acme");
    let good = sha(b"x");
    let target = fx.dir.path().join("never");
    for bad in [
        "../x".to_owned(),
        format!("../{}", &good[3..]),
        good.to_uppercase(),
        good[..63].to_owned(),
        format!("{good}0"),
        String::new(),
        format!("{}/{}", &good[..31], &good[32..]),
    ] {
        assert_invalid_digest(fx.blobs.get(&acme, &bad).await);
        assert_invalid_digest(fx.blobs.exists(&acme, &bad).await);
        assert_invalid_digest(fx.blobs.delete(&acme, &bad).await);
        assert_invalid_digest(fx.blobs.get_to_file(&acme, &bad, &target).await);
        assert_invalid_digest(fx.blobs.key(&acme, &bad));
    }
    assert!(!target.exists());
    assert_eq!(fx.puts(), 0);
    assert_eq!(fx.keys().await, Vec::<String>::new());
});

blob_test!(large_files_stream_through, |fx: Arc<Fixture>| async move {
    let acme = tid("acme");
    let content = noise(20 << 20, 42);
    let source = fx.dir.path().join("big.bin");
    std::fs::write(&source, &content).unwrap();

    let blob = fx.blobs.put_file(&acme, &source).await.unwrap();
    assert_eq!(blob, blob_ref(&content));
    assert_eq!(fx.puts(), 1);
    assert_eq!(fx.blobs.list(&acme).await.unwrap(), vec![blob.clone()]);

    let copy = fx.dir.path().join("copy.bin");
    assert_eq!(
        fx.blobs.get_to_file(&acme, &blob.sha256, &copy).await.unwrap(),
        blob
    );
    assert!(
        std::fs::read(&copy).unwrap() == content,
        "the copy differs from the original"
    );
    assert!(fx.blobs.get(&acme, &blob.sha256).await.unwrap() == content);

    assert_eq!(fx.blobs.put_file(&acme, &source).await.unwrap(), blob);
    assert_eq!(fx.puts(), 1, "an unchanged file was uploaded again");

    // A streamed upload of another large content goes through the spool and in parts.
    let other = noise(12 << 20, 43);
    let stream = futures::stream::iter(
        other
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let streamed = fx.blobs.put_stream(&acme, stream).await.unwrap();
    assert_eq!(streamed, blob_ref(&other));
    assert!(fx.blobs.get(&acme, &streamed.sha256).await.unwrap() == other);
    assert_eq!(fx.puts(), 2);
});

blob_test!(delete_and_list, |fx: Arc<Fixture>| async move {
    let acme = tid("acme");
    assert_eq!(fx.blobs.list(&acme).await.unwrap(), Vec::<BlobRef>::new());
    let mut stored = Vec::new();
    for content in [&b"one"[..], b"two", b"three"] {
        stored.push(
            fx.blobs
                .put(&acme, Bytes::copy_from_slice(content))
                .await
                .unwrap(),
        );
    }
    stored.sort();
    assert_eq!(fx.blobs.list(&acme).await.unwrap(), stored);

    let gone = stored.remove(1);
    fx.blobs.delete(&acme, &gone.sha256).await.unwrap();
    assert!(!fx.blobs.exists(&acme, &gone.sha256).await.unwrap());
    assert_not_found(fx.blobs.get(&acme, &gone.sha256).await);
    assert_eq!(fx.blobs.list(&acme).await.unwrap(), stored);

    // Deleting again, or something never stored, is fine.
    fx.blobs.delete(&acme, &gone.sha256).await.unwrap();
    fx.blobs.delete(&acme, &sha(b"never")).await.unwrap();

    // Objects under the tenant's prefix that are not blobs are not listed.
    fx.raw
        .put(
            &Path::from("hangar/acme/blobs/not-a-digest"),
            PutPayload::from_static(b"?"),
        )
        .await
        .unwrap();
    fx.raw
        .put(
            &Path::from(format!("hangar/acme/blobs/{}/nested", gone.sha256)),
            PutPayload::from_static(b"?"),
        )
        .await
        .unwrap();
    assert_eq!(fx.blobs.list(&acme).await.unwrap(), stored);
    assert_eq!(
        fx.blobs.list(&tid("acme-2")).await.unwrap(),
        Vec::<BlobRef>::new()
    );
});
