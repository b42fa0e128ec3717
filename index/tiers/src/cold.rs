//! The cold tier: object storage through the `object_store` crate, a local
//! folder (`file:///…`) or S3 (`s3://bucket/prefix`, any S3-compatible
//! endpoint such as SeaweedFS or MinIO).
//!
//! Requests are bounded in time (connect and request timeouts, at most
//! `max_retries` retries) so an unreachable store fails fast instead of
//! retrying for minutes (object_store's default), and callers' deadlines
//! hold.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig,
};

use crate::{Result, TierError};

/// How to reach an S3 store. Credentials left out are read from the
/// standard `AWS_*` environment variables.
#[derive(Clone)]
pub struct ColdOptions {
    /// An S3-compatible endpoint (`http://127.0.0.1:8333`); AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: usize,
}

impl Default for ColdOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
            max_retries: 1,
        }
    }
}

impl fmt::Debug for ColdOptions {
    // Never prints the secret (logs and error messages carry options).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColdOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// An object store and the prefix block keys live under.
#[derive(Debug, Clone)]
pub struct ColdStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

/// Installs rustls's ring provider as the process default once (reqwest
/// is built without a provider of its own; see the workspace Cargo.toml).
/// rustls deprecates ring's provider for lacking post-quantum key
/// exchange; we keep it because aws-lc-rs needs cmake to build, and a
/// program embedding this crate can install another provider first (an
/// installed default is kept).
#[allow(deprecated)]
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ColdStore {
    /// Opens `url`: `file:///abs/dir` (or an absolute path) or
    /// `s3://bucket[/prefix]`. Nothing is contacted until the first call.
    pub fn open(url: &str, options: &ColdOptions) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(TierError::Config(format!("{url}: no bucket name")));
            }
            install_crypto();
            let client = ClientOptions::new()
                .with_connect_timeout(options.connect_timeout)
                .with_timeout(options.request_timeout)
                .with_allow_http(
                    options
                        .endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                );
            let retry = RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(200),
                    base: 2.0,
                },
                max_retries: options.max_retries,
                retry_timeout: options.request_timeout,
            };
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(client)
                .with_retry(retry)
                .with_region(options.region.as_deref().unwrap_or("us-east-1"));
            if let Some(endpoint) = &options.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(id) = &options.access_key_id {
                builder = builder.with_access_key_id(id);
            }
            if let Some(secret) = &options.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder
                .build()
                .map_err(|e| TierError::Config(format!("{url}: {e}")))?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                url: url.to_string(),
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if !dir.starts_with('/') {
            return Err(TierError::Config(format!(
                "{url}: expected s3://bucket/prefix, file:///absolute/dir or an absolute path"
            )));
        }
        std::fs::create_dir_all(dir).map_err(TierError::io(std::path::Path::new(dir)))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| TierError::Config(format!("{url}: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: String::new(),
            url: url.to_string(),
        })
    }

    /// The store's URL (no credentials: those never sit in the URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This store with `sub` appended to its prefix (a bank's blocks under
    /// `<bank prefix>/blocks`).
    pub fn sub(&self, sub: &str) -> Self {
        let sub = sub.trim_matches('/');
        let prefix = match (self.prefix.is_empty(), sub.is_empty()) {
            (_, true) => self.prefix.clone(),
            (true, false) => sub.to_string(),
            (false, false) => format!("{}/{sub}", self.prefix),
        };
        Self {
            store: Arc::clone(&self.store),
            prefix,
            url: format!("{}/{sub}", self.url.trim_end_matches('/')),
        }
    }

    fn location(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The object under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let fail = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => TierError::NotFound { key: key.into() },
            other => TierError::Unavailable {
                key: key.into(),
                detail: other.to_string(),
            },
        };
        let got = self.store.get(&self.location(key)).await.map_err(fail)?;
        got.bytes().await.map_err(fail)
    }

    /// Stores `data` under `key`.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.location(key), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| TierError::Store(format!("put {key} to {}: {e}", self.url)))
    }
}
