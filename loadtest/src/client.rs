//! A small HTTP/1.1 client with a fixed-size pool of keep-alive connections.
//!
//! Built on hyper's connection-level API rather than a general client
//! because a load generator needs exactly what a general client hides: a
//! hard upper bound on connections (`--connections`), no per-request DNS,
//! URL parsing or proxy logic, and requests that queue for a free
//! connection — that queueing time is part of the latency, which is counted
//! from the intended send time by the caller. HTTP/1.1 has no pipelining
//! here, so one connection carries one request at a time, as with `wrk`.
//!
//! Each connection's state machine is driven by the request task that is
//! using it rather than by a task of its own, which halves the task
//! wake-ups per request (and the cross-thread hand-offs that come with
//! them): on the 2-core development machine this about doubled the rate of
//! a single connection.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Mutex;
use std::task::Poll;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::{LoadError, Result};

/// Where requests go: `http://host:port` plus an optional path prefix.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// `host:port`, for the `Host` header and for connecting.
    pub authority: String,
    /// A prefix put before every route (empty, or `/something` without a
    /// trailing slash).
    pub prefix: String,
}

impl Target {
    /// Parses `http://host:port[/prefix]`. HTTPS is not supported: the
    /// harness measures the gateway, and TLS would be measured with it.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |m: &str| LoadError::Config(format!("--target `{url}`: {m}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported; use http://")),
            _ => return Err(bad("expected http://host:port")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host"))?
            .as_str()
            .to_string();
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let authority = if uri.port_u16().is_some() {
            authority
        } else {
            format!("{authority}:80")
        };
        if uri.query().is_some() {
            return Err(bad("a query string makes no sense here"));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Self {
            url: url.to_string(),
            authority,
            prefix,
        })
    }

    /// The request path for `route` (which starts with `/`).
    pub fn path(&self, route: &str) -> Result<Uri> {
        format!("{}{route}", self.prefix)
            .parse()
            .map_err(|e| LoadError::Config(format!("bad request path `{route}`: {e}")))
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// Connecting, writing or reading failed.
    Transport(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transport(m) => write!(f, "{m}"),
        }
    }
}

/// A response, with its body read in full (keep-alive needs it drained).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

type Sender = SendRequest<Full<Bytes>>;
type Driver = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One keep-alive connection: the request handle and the connection state
/// machine, which the request that uses it drives itself.
struct Conn {
    sender: Sender,
    driver: Driver,
}

/// Polls `fut` to completion while also driving the connection, so a
/// request, its connection's I/O and its response body are all handled by
/// one task: no hand-off to a separate connection task (and often another
/// thread) and back for every request. If the connection ends, it is
/// dropped (`None`), which makes any request still waiting on it fail
/// instead of hang.
async fn drive<F: Future>(driver: &mut Option<Driver>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(d) = driver.as_mut() {
            if Pin::new(d).poll(cx).is_ready() {
                *driver = None;
            }
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// At most `size` connections to one address, reused across requests.
pub struct Pool {
    addr: SocketAddr,
    host: HeaderValue,
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// Resolves the target once and opens `warm` connections up front, so
    /// connection set-up does not land in the first second's latencies and
    /// an unreachable target fails before the run starts.
    pub async fn connect(target: &Target, size: usize, warm: usize) -> Result<Self> {
        let connect_err = |m: String| LoadError::Connect {
            target: target.url.clone(),
            message: m,
        };
        let addr = tokio::net::lookup_host(&target.authority)
            .await
            .map_err(|e| connect_err(e.to_string()))?
            .next()
            .ok_or_else(|| connect_err("the host name has no address".into()))?;
        let host = HeaderValue::from_str(&target.authority)
            .map_err(|e| connect_err(format!("bad host: {e}")))?;
        let pool = Self {
            addr,
            host,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
        };
        // Sequential: on a local target this takes well under a millisecond
        // per connection.
        let mut idle = Vec::with_capacity(warm.min(size));
        for _ in 0..warm.min(size) {
            idle.push(pool.open().await.map_err(|e| connect_err(e.to_string()))?);
        }
        *pool.idle.lock().unwrap_or_else(|e| e.into_inner()) = idle;
        Ok(pool)
    }

    async fn open(&self) -> std::result::Result<Conn, SendError> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| SendError::Transport(format!("connect: {e}")))?;
        // Requests are small and latency-bound: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Transport(format!("handshake: {e}")))?;
        Ok(Conn { sender, driver })
    }

    /// A pooled connection that is still open, or a new one. An idle
    /// connection is polled once first: that reads an EOF the server may
    /// have sent while nobody was polling it.
    async fn checkout(&self) -> std::result::Result<(Sender, Option<Driver>), SendError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(Conn { sender, driver }) = pooled {
            let mut driver = Some(driver);
            let alive = poll_fn(|cx| {
                if let Some(d) = driver.as_mut() {
                    if Pin::new(d).poll(cx).is_ready() {
                        driver = None;
                    }
                }
                Poll::Ready(driver.is_some())
            })
            .await;
            if alive {
                let mut sender = sender;
                if drive(&mut driver, sender.ready()).await.is_ok() && driver.is_some() {
                    return Ok((sender, driver));
                }
            }
        }
        // Nothing was sent on a dead idle connection, so a fresh one is
        // safe even for writes.
        let Conn { mut sender, driver } = self.open().await?;
        let mut driver = Some(driver);
        drive(&mut driver, sender.ready())
            .await
            .map_err(|e| SendError::Transport(e.to_string()))?;
        Ok((sender, driver))
    }

    /// Sends one request on a pooled connection (waiting for one to be free)
    /// and reads the whole body. Sets the `Host` header.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> std::result::Result<Response, SendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Transport("pool closed".into()))?;
        req.headers_mut().insert(HOST, self.host.clone());
        let (mut sender, mut driver) = self.checkout().await?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| SendError::Transport(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SendError::Transport(format!("reading body: {e}")))?
                .to_bytes();
            Ok(Response { status, body })
        };
        let result = drive(&mut driver, exchange).await;
        if let (Ok(_), Some(driver)) = (&result, driver) {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Conn { sender, driver });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path("/v1/search").unwrap(), "/v1/search");
        let t = Target::parse("http://localhost/api/").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.path("/healthz").unwrap(), "/api/healthz");
        for bad in [
            "https://x:1",
            "127.0.0.1:8080",
            "http://",
            "not a url",
            "ftp://x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
