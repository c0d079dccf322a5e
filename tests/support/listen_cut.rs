//! A Postgres proxy that can cut one replica's invalidation listener and
//! nothing else: once [`ListenCut::cut`] is called, every connection that
//! sent `LISTEN` is closed, and so is any new one the moment it sends
//! `LISTEN`, while the connections of the pool (lookups) pass. The replica
//! behind it then hears of revocations only through Redis, as one behind
//! PgBouncer in transaction mode would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ListenCut {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// The connections that sent LISTEN.
    listeners: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

fn sends_listen(bytes: &[u8]) -> bool {
    bytes.windows(7).any(|w| w.eq_ignore_ascii_case(b"LISTEN "))
}

impl ListenCut {
    pub async fn start(target: SocketAddr) -> ListenCut {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let listeners = Arc::new(Mutex::new(Vec::new()));
        let (c, ls) = (cut.clone(), listeners.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = l.accept().await else {
                    continue;
                };
                let (c, ls2) = (c.clone(), ls.clone());
                let (tx, rx) = tokio::sync::oneshot::channel::<tokio::task::AbortHandle>();
                let h = tokio::spawn(async move {
                    let Ok(me) = rx.await else { return };
                    let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sends_listen(&buf[..n]) {
                            if c.load(Ordering::SeqCst) {
                                break;
                            }
                            ls2.lock().unwrap().push(me.clone());
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                });
                let _ = tx.send(h.abort_handle());
            }
        });
        ListenCut {
            addr,
            cut,
            listeners,
            task,
        }
    }

    /// From now on no connection behind this proxy listens.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.listeners.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for ListenCut {
    fn drop(&mut self) {
        self.task.abort();
        for h in self.listeners.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}
