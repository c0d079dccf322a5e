//! The bare hyper proxy of `bench/load.sh`: hyper 1's HTTP/1 server in
//! front of hyper-util's pooled legacy client, forwarding each request with
//! its URI pointed at the upstream. No authentication and no header work:
//! it shows what hyper's own two HTTP/1 sides cost per request, the ceiling
//! for any proxy built on them. Not part of authgate.
//!
//! `cargo run --release --example bench_hyper_proxy -- LISTEN UPSTREAM`

use http::Uri;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench_hyper_proxy LISTEN UPSTREAM");
        std::process::exit(2);
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(listen: String, upstream: String) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let target = format!(
                    "http://{upstream}{}",
                    req.uri().path_and_query().map_or("/", |p| p.as_str())
                );
                async move {
                    *req.uri_mut() = target.parse::<Uri>().map_err(std::io::Error::other)?;
                    let resp = client.request(req).await.map_err(std::io::Error::other)?;
                    Ok::<Response<Incoming>, std::io::Error>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
