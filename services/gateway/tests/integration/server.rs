//! The real `mnemos` binary on a loopback port, for the tests that restart,
//! `kill -9` or inspect a running server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{hit_ids, model_dir, vision_dir, TOKEN};

pub(crate) struct Server {
    child: Child,
    pub base: String,
}

/// How to start a server beyond its data directory.
#[derive(Default)]
pub(crate) struct Options<'a> {
    /// Extra environment (`MNEMOS__*` settings, tokens).
    pub env: &'a [(&'a str, &'a str)],
    /// Where stderr (the log) goes; inherited when `None`.
    pub log: Option<PathBuf>,
    /// `RUST_LOG` (default `warn`).
    pub log_level: Option<&'a str>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Starts `mnemos serve` with extra `MNEMOS__*` settings.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_opts(
            data_dir,
            Options {
                env,
                ..Options::default()
            },
        )
    }

    pub fn start_opts(data_dir: &Path, opts: Options<'_>) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnemos"));
        cmd.args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("MNEMOS_ADMIN_TOKEN", TOKEN)
        .env("MNEMOS__SERVER__SEED_DEMO", "false")
        .env("RUST_LOG", opts.log_level.unwrap_or("warn"))
        .envs(opts.env.iter().copied())
        .stdout(Stdio::null());
        match &opts.log {
            Some(path) => cmd.stderr(std::fs::File::create(path).unwrap()),
            None => cmd.stderr(Stdio::inherit()),
        };
        let embeddings_only = opts.env.contains(&("MNEMOS__VISUAL__ENCODER", "false"));
        if vision_dir().is_none() && !embeddings_only {
            cmd.arg("--no-visual");
        }
        match model_dir() {
            Some(m) => {
                cmd.arg("--model-dir").arg(m);
            }
            None => {
                cmd.arg("--no-dense");
            }
        }
        let child = cmd.spawn().expect("starting mnemos");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        server.wait_ready();
        server
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Ok(r) = Self::agent().get(&format!("{}/readyz", self.base)).call() {
                if r.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server at {} not ready in time", self.base);
    }

    pub fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        admin: bool,
    ) -> (u16, serde_json::Value) {
        self.try_post(path, body, admin).expect("request sent")
    }

    /// `post`, or `Err` when the connection fails (the server was killed).
    pub fn try_post(
        &self,
        path: &str,
        body: &serde_json::Value,
        admin: bool,
    ) -> Result<(u16, serde_json::Value), ureq::Error> {
        let mut req = Self::agent().post(&format!("{}{path}", self.base));
        if admin {
            req = req.header("Authorization", &format!("Bearer {TOKEN}"));
        }
        let mut resp = req.send_json(body)?;
        let status = resp.status().as_u16();
        Ok((status, resp.body_mut().read_json().unwrap_or_default()))
    }

    pub fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.try_delete(path).expect("request sent")
    }

    pub fn try_delete(&self, path: &str) -> Result<(u16, serde_json::Value), ureq::Error> {
        let mut resp = Self::agent()
            .delete(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()?;
        let status = resp.status().as_u16();
        Ok((status, resp.body_mut().read_json().unwrap_or_default()))
    }

    /// `GET path` with the admin token.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut resp = Self::agent()
            .get(&format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_json().unwrap_or_default())
    }

    /// Top-50 ids of one backend, and the whole response.
    pub fn search_full(&self, query: &str, backend: &str) -> (Vec<String>, serde_json::Value) {
        let body = serde_json::json!({"query": query, "k": 50, "backends": [backend]});
        let (status, resp) = self.post("/v1/search", &body, false);
        assert_eq!(status, 200, "{resp}");
        (hit_ids(&resp), resp)
    }

    /// The process id (for `kill -9` from another thread).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(mut self) {
        // SIGKILL: no shutdown hook runs, nothing is flushed by us.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
