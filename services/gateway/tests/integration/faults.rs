//! Faults around the real binary: a full disk, damaged index files, and
//! the log, which must never contain a token.

use std::path::Path;
use std::process::Command;

use crate::common::{docs_json, model_dir, TOKEN};
use crate::server::{Options, Server};

fn backends() -> Vec<&'static str> {
    if model_dir().is_some() {
        vec!["bm25", "dense", "hypencoder"]
    } else {
        vec!["bm25"]
    }
}

fn ledger(n: usize) -> Vec<(String, String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("f{i}"),
                format!("Tide table {i}"),
                format!("Spring tide gauge reading number {i} at the harbour wall."),
            )
        })
        .collect()
}

fn post_docs(server: &Server, docs: &[(String, String, String)]) -> (u16, serde_json::Value) {
    let refs: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    server.post("/v1/admin/documents", &docs_json(&refs), true)
}

/// Flips one byte in the middle of `path`.
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_index_files_are_rebuilt_from_the_store_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let docs = ledger(20);
    assert_eq!(post_docs(&server, &docs).0, 200);
    let (st, _) = server.delete("/v1/admin/documents/f3");
    assert_eq!(st, 200);
    server.stop(); // persists every index

    // Damage every persisted index file: a flipped byte in the vector
    // snapshots, a truncated tantivy meta file.
    let mut damaged = 0;
    for sub in ["dense", "hypencoder"] {
        for entry in std::fs::read_dir(dir.path().join(sub))
            .into_iter()
            .flatten()
        {
            let path = entry.unwrap().path();
            if path.is_file() && std::fs::metadata(&path).unwrap().len() > 16 {
                damage(&path);
                damaged += 1;
            }
        }
    }
    let meta = dir.path().join("bm25/meta.json");
    let text = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &text[..text.len() / 2]).unwrap();
    damaged += 1;
    assert!(damaged >= backends().len(), "{damaged} files damaged");

    let server = Server::start(dir.path());
    for b in backends() {
        let (ids, resp) = server.search_full("spring tide gauge reading harbour", b);
        assert_eq!(ids.len(), 19, "{b}: {resp}");
        assert!(!ids.contains(&"f3".to_string()), "{b} served removed f3");
    }
    assert!(dir.path().join("bm25.corrupt").is_dir());
    if model_dir().is_some() {
        assert!(dir.path().join("dense.corrupt").is_dir());
        assert!(dir.path().join("hypencoder.corrupt").is_dir());
    }
    server.stop();
}

#[test]
fn tokens_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let data = dir.path().join("data");
    let read = "read-secret-0f3c9a";
    let wrong = "guess-secret-77ab1e";
    let env = [("MNEMOS__SERVER__READ_TOKEN", read)];
    let server = Server::start_opts(
        &data,
        Options {
            env: &env,
            log: Some(log.clone()),
            log_level: Some("debug"),
        },
    );
    let agent = Server::agent();
    let url = |p: &str| format!("{}{p}", server.base);
    for token in [TOKEN, read, wrong] {
        let auth = format!("Bearer {token}");
        let _ = agent
            .post(&url("/v1/search"))
            .header("Authorization", &auth)
            .send_json(serde_json::json!({"query": "tide", "k": 3}));
        let _ = agent
            .post(&url("/v1/admin/documents"))
            .header("Authorization", &auth)
            .send_json(serde_json::json!({"documents": [{"id": "../bad", "text": "x"}]}));
        let _ = agent
            .delete(&url("/v1/admin/documents/f1"))
            .header("Authorization", &auth)
            .call();
        let _ = agent
            .get(&url(&format!("/v1/admin/documents/{token}")))
            .header("Authorization", &auth)
            .call();
    }
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.len() > 100,
        "the log is too short to prove much: {text}"
    );
    for secret in [TOKEN, read, wrong] {
        // The id route echoes the id in its 404 body, not in the log.
        assert!(!text.contains(secret), "`{secret}` appears in the log");
    }
}

/// Mounts a tmpfs of `mb` MiB at `dir`; `false` when this machine does not
/// allow it (not root), and the test then says so and stops, unless
/// `MNEMOS_REQUIRE_TMPFS` is set.
fn mount_tmpfs(dir: &Path, mb: usize) -> bool {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    // CI runs as root and sets this, so there the test cannot skip.
    if !ok && std::env::var_os("MNEMOS_REQUIRE_TMPFS").is_some() {
        panic!("MNEMOS_REQUIRE_TMPFS is set but a tmpfs cannot be mounted");
    }
    if !ok {
        eprintln!("note: cannot mount a tmpfs (needs root); skipping the full-disk test");
    }
    ok
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn a_full_disk_answers_507_keeps_reads_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    if !mount_tmpfs(&data, 6) {
        return;
    }
    let _unmount = Unmount(&data);
    let env = [
        ("MNEMOS__VISUAL__ENCODER", "false"),
        ("MNEMOS__VISUAL__DIM", "8"),
        ("MNEMOS__LM__ENABLED", "false"),
        ("MNEMOS__STORE__COMPACT_AFTER_BYTES", "1000000000"),
        ("MNEMOS__STORE__MIN_FREE_MB", "1"),
    ];
    let server = Server::start_with(&data, &env);
    let filler = "ebb and flow of the estuary ".repeat(1200); // ~33 kB
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..400 {
        let id = format!("big-{i}");
        let doc = vec![(id.clone(), format!("Estuary log {i}"), filler.clone())];
        let (st, body) = post_docs(&server, &doc);
        match st {
            200 => acknowledged.push(id),
            507 => {
                full = Some(body);
                break;
            }
            _ => panic!("write {i} answered {st}: {body}"),
        }
    }
    let body = full.expect("6 MiB should fill within 400 writes of 33 kB");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{body}"
    );
    assert!(acknowledged.len() > 5, "{} writes fit", acknowledged.len());

    // Reads go on while the disk is full, and so do further refusals.
    for b in backends().into_iter().take(2) {
        let (ids, _) = server.search_full("estuary log ebb and flow", b);
        assert!(!ids.is_empty(), "{b} answers while the disk is full");
    }
    let (st, body) = post_docs(&server, &ledger(1));
    assert_eq!(st, 507, "{body}");
    let item = serde_json::json!({"items": [{"id": "v1", "label": "a", "embedding": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}]});
    let (st, body) = server.post("/v1/admin/visual/memories", &item, true);
    assert!(
        st == 507 || st == 200,
        "visual write on a full disk: {st} {body}"
    );

    // Nothing acknowledged was lost: after a kill -9 and a restart on a
    // disk with room again, every acknowledged document is there.
    server.kill9();
    let status = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    let server = Server::start_with(&data, &env);
    for id in &acknowledged {
        let (st, body) = server.get(&format!("/v1/admin/documents/{id}"));
        assert_eq!(st, 200, "acknowledged {id} lost: {body}");
    }
    // And writes work again.
    assert_eq!(post_docs(&server, &ledger(2)).0, 200);
    server.stop();
}

/// Clients that send headers and then trickle (here: stall) their body get
/// 408 after `admission.body_timeout_ms`, and hold no slot meanwhile: with
/// one search slot, a normal search is served while three of them stall.
#[test]
fn a_stalled_body_gets_408_and_holds_no_slot() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MNEMOS__ADMISSION__BODY_TIMEOUT_MS", "1500"),
        ("MNEMOS__ADMISSION__SEARCH__CONCURRENCY", "1"),
        ("MNEMOS__LM__ENABLED", "false"),
        ("MNEMOS__VISUAL__ENCODER", "false"),
        ("MNEMOS__VISUAL__DIM", "8"),
    ];
    let server = Server::start_with(dir.path(), &env);
    assert_eq!(post_docs(&server, &ledger(3)).0, 200);
    let addr = server.base.trim_start_matches("http://").to_string();
    let stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            let head = "POST /v1/search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"query\":";
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let (ids, _) = server.search_full("spring tide gauge", "bm25");
    assert_eq!(ids.len(), 3, "served while three bodies stall");
    assert!(
        started.elapsed().as_millis() < 1000,
        "the search did not wait for a slot"
    );
    for mut s in stalled {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
    }
    server.stop();
}
