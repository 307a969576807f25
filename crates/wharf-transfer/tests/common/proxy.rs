//! An HTTP proxy in front of a registry that records every request and can
//! serve one blob with wrong bytes (same length, first byte flipped).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wharf_oci::Digest;

/// One request that went through: method and path (with query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
}

impl Seen {
    pub fn is_ping(&self) -> bool {
        self.path == "/v2/" || self.path == "/v2"
    }

    pub fn is_blob_upload(&self) -> bool {
        self.path.contains("/blobs/uploads/") && self.method != "POST"
    }
}

struct State {
    upstream: String,
    me: String,
    corrupt: Option<Digest>,
    seen: Mutex<Vec<Seen>>,
    /// Request body bytes forwarded (uploads).
    bytes_in: Mutex<u64>,
    http: reqwest::Client,
}

pub struct CountingProxy {
    pub host: String,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl CountingProxy {
    pub async fn start(upstream: &str, corrupt: Option<Digest>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            me: me.clone(),
            corrupt,
            seen: Mutex::new(Vec::new()),
            bytes_in: Mutex::new(0),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let (tx, mut rx) = oneshot::channel::<()>();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(c) => c, Err(_) => continue },
                    _ = &mut rx => break,
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| forward(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        CountingProxy {
            host: me,
            state,
            shutdown: Some(tx),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.state.seen.lock().unwrap().clear();
        *self.state.bytes_in.lock().unwrap() = 0;
    }

    pub fn bytes_in(&self) -> u64 {
        *self.state.bytes_in.lock().unwrap()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn forward(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
    });
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    *state.bytes_in.lock().unwrap() += body.len() as u64;
    let mut out = state
        .http
        .request(method.clone(), format!("http://{}{path}", state.upstream))
        .body(body);
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            out = out.header(name, value);
        }
    }
    let upstream = match out.send().await {
        Ok(r) => r,
        Err(_) => {
            return Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::new()))
                .unwrap())
        }
    };
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if matches!(name.as_str(), "transfer-encoding" | "connection") {
            continue;
        }
        if name.as_str() == "location" {
            let v = value
                .to_str()
                .unwrap_or("")
                .replace(&state.upstream, &state.me);
            response = response.header(name, v);
        } else {
            response = response.header(name, value);
        }
    }
    let status = upstream.status();
    let mut bytes = upstream.bytes().await.unwrap_or_default().to_vec();
    let corrupt = state.corrupt.as_ref().is_some_and(|d| {
        method == "GET" && status == 200 && path.ends_with(&format!("/blobs/{d}"))
    });
    if corrupt && !bytes.is_empty() {
        bytes[0] ^= 0xff;
    }
    Ok(response.body(Full::new(Bytes::from(bytes))).unwrap())
}
