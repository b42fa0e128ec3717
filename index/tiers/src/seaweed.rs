//! A SeaweedFS S3 server on loopback, for tests and benchmarks of the cold
//! tier against a real S3 API (the binary comes from
//! `scripts/install-seaweedfs.sh`). Stoppable and restartable on the same
//! ports and data, to test what readers see while the store is gone.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{ColdOptions, ColdStore, Result, TierError};

/// Credentials of the test server's one identity (loopback only).
pub const ACCESS_KEY: &str = "mnemos-test";
pub const SECRET_KEY: &str = "mnemos-test-secret";

/// A running (or stopped) `weed server -s3`.
#[derive(Debug)]
pub struct Seaweed {
    binary: PathBuf,
    dir: PathBuf,
    ports: [u16; 4],
    child: Option<Child>,
}

/// A loopback port `p` with `p + 10000` free as well (SeaweedFS puts each
/// service's gRPC port 10000 above its HTTP port).
fn free_port_pair(taken: &[u16]) -> Result<u16> {
    for _ in 0..200 {
        let l =
            TcpListener::bind("127.0.0.1:0").map_err(TierError::io(Path::new("127.0.0.1:0")))?;
        let p = l
            .local_addr()
            .map_err(TierError::io(Path::new("127.0.0.1:0")))?
            .port();
        if p > 55_000 || taken.contains(&p) || taken.contains(&(p + 10_000)) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return Ok(p);
        }
    }
    Err(TierError::Config("no free loopback port pair".into()))
}

impl Seaweed {
    /// The `weed` binary: `$MNEMOS_WEED`, else `tools/seaweedfs/weed` in
    /// this repository.
    pub fn binary() -> PathBuf {
        std::env::var_os("MNEMOS_WEED").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/seaweedfs/weed"),
            PathBuf::from,
        )
    }

    /// Starts a server keeping its data in `dir`, and waits until it
    /// stores objects.
    pub fn start(dir: &Path) -> Result<Self> {
        let binary = Self::binary();
        if !binary.is_file() {
            return Err(TierError::Config(format!(
                "{} not found: run scripts/install-seaweedfs.sh (scripts/test.sh does)",
                binary.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(TierError::io(dir))?;
        let mut ports = [0u16; 4];
        for i in 0..4 {
            ports[i] = free_port_pair(&ports[..i])?;
        }
        let mut s = Self {
            binary,
            dir: dir.to_path_buf(),
            ports,
            child: None,
        };
        s.restart()?;
        Ok(s)
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// Options reaching this server.
    pub fn options(&self) -> ColdOptions {
        ColdOptions {
            endpoint: Some(self.endpoint()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..ColdOptions::default()
        }
    }

    /// A store for `s3://<bucket>/<prefix>` on this server.
    pub fn store(&self, bucket: &str, prefix: &str) -> Result<ColdStore> {
        ColdStore::open(&format!("s3://{bucket}/{prefix}"), &self.options())
    }

    /// Kills the server (its data stays in the directory).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same ports and data, and waits until a
    /// probe object can be written (at most 60 s).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let config = self.dir.join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"mnemos","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(&config, identities).map_err(TierError::io(&config))?;
        let log_path = self.dir.join("weed.log");
        let log = std::fs::File::create(&log_path).map_err(TierError::io(&log_path))?;
        let err_log = log.try_clone().map_err(TierError::io(&log_path))?;
        let [master, volume, filer, s3] = self.ports;
        let child = Command::new(&self.binary)
            .arg("server")
            .arg(format!("-dir={}", self.dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", config.display()))
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=16"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(TierError::io(&self.binary))?;
        self.child = Some(child);
        let store = self.store("mnemos-probe", "")?;
        // The probe runs on a thread of its own with its own runtime:
        // callers may be inside a runtime (async tests), where blocking on
        // (or dropping) another one panics.
        let up = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<bool> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| TierError::Config(e.to_string()))?;
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_secs(60) {
                        if TcpStream::connect(("127.0.0.1", s3)).is_ok()
                            && runtime
                                .block_on(store.put("probe", Bytes::from_static(b"ok")))
                                .is_ok()
                        {
                            return Ok(true);
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Ok(false)
                })
                .join()
                .unwrap_or(Ok(false))
        })?;
        if !up {
            self.stop();
            return Err(TierError::Config(format!(
                "SeaweedFS did not come up within 60 s (log: {})",
                log_path.display()
            )));
        }
        Ok(())
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}
