//! The floor of `bench/load.sh`: the least a proxy can do. Each client
//! connection gets its own upstream connection for as long as it is open,
//! and bytes are copied both ways unchanged: no parsing, no headers, no
//! authentication. Not part of authgate; it shows what one tokio worker can
//! forward when it does nothing else.
//!
//! `cargo run --release --example bench_floor -- LISTEN UPSTREAM`

use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench_floor LISTEN UPSTREAM");
        std::process::exit(2);
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(&listen).await?;
            loop {
                let (mut client, _) = listener.accept().await?;
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        })
}
