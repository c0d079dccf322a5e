//! A small upstream for the quickstart and the integration tests: it answers
//! every request with a JSON description of what it received (method, path,
//! headers, body size), so you can see what authgate forwarded.
//!
//! Special paths (under any prefix): `.../__slow?ms=N` waits N ms before answering;
//! `.../__stream?bytes=N` streams an N-byte body back; any request body is
//! counted, not kept, so large uploads stream through. `GET /__log` returns
//! every request received since the last `/__log` (method, path, headers),
//! so a test can check exactly what reached the upstream.
//!
//! `cargo run --example echo_upstream -- 127.0.0.1:1337`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Body = http_body_util::Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>,
>;

fn param(q: Option<&str>, name: &str) -> Option<u64> {
    q?.split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

async fn answer(req: Request<Incoming>, log: Log) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::Array(a)) => a.push(v.into()),
            _ => {
                headers.insert(
                    k.as_str().to_owned(),
                    serde_json::Value::Array(vec![v.into()]),
                );
            }
        }
    }
    let query = req.uri().query().map(str::to_owned);
    if path == "/__log" {
        let seen = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
        let body = serde_json::Value::Array(seen).to_string();
        return Ok(Response::new(http_body_util::Either::Left(Full::new(
            Bytes::from(body),
        ))));
    }
    {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= 10_000 {
            log.remove(0); // a demo that nobody reads must not grow without bound
        }
        log.push(serde_json::json!({"method": method, "path": path, "headers": headers.clone()}));
    }
    if req.uri().path().ends_with("/__slow") {
        let ms = param(query.as_deref(), "ms").unwrap_or(1000);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if req.uri().path().ends_with("/__stream") {
        let total = param(query.as_deref(), "bytes").unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len() as u64);
                Some((Ok(Frame::data(chunk.slice(..n as usize))), left - n))
            }
        });
        let boxed: futures_util::stream::BoxStream<'static, _> = Box::pin(stream);
        return Ok(Response::new(http_body_util::Either::Right(
            StreamBody::new(boxed),
        )));
    }
    let mut body = req.into_body();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let out = serde_json::json!({"method": method, "path": path, "headers": headers, "body_bytes": body_bytes});
    let mut resp = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
        out.to_string(),
    ))));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    Ok(resp)
}

/// Serve on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let log: Log = Default::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let log = log.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| answer(req, log.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1337".into())
        .parse()
        .expect("address like 127.0.0.1:1337");
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    // The bound address, so `127.0.0.1:0` reports the port it got.
    let addr = listener.local_addr().unwrap_or(addr);
    eprintln!("echo upstream listening on http://{addr}");
    serve(listener).await;
}
