//! Bodies stream through the gateway in both directions: 50 MiB up and
//! 50 MiB down while the process's peak memory stays far below that.
//! In its own test binary so no other test inflates the peak.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;

const SIZE: u64 = 50 * 1024 * 1024;

/// Peak resident set size of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("kB")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_each_way_without_buffering() {
    let env = Env::new().await;
    let (_, key) = env.content_token("uploader", "full-access", &[]);
    let g = env.gateway().await;
    // Warm up every path once so lazy allocations are not counted.
    assert_eq!(get(&g.url("/api/articles"), Some(&key)).await.status, 200);
    let before = peak_rss();

    // Upload: a generated stream the client never holds whole.
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let frames = Box::pin(futures_util::stream::unfold(SIZE, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(chunk.len() as u64) as usize;
            Some((
                Ok::<_, Infallible>(Frame::data(chunk.slice(..n))),
                left - n as u64,
            ))
        }
    }));
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(g.url("/api/uploads"))
        .header("authorization", format!("Bearer {key}"))
        .body(StreamBody::new(frames))
        .expect("request");
    let resp = client.request(req).await.expect("upload response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        echoed["body_bytes"], SIZE,
        "the upstream received every byte"
    );

    // Download: count the bytes as they arrive.
    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(g.url(&format!("/api/__stream?bytes={SIZE}")))
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("download response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame
            .expect("frame")
            .data_ref()
            .map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, SIZE);

    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 16 * 1024 * 1024,
        "peak RSS grew by {} MiB while streaming 2 x 50 MiB",
        grew / (1024 * 1024)
    );
}
