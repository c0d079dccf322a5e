//! An OTLP/HTTP trace receiver for the tests: `tests/otlp/receiver.py`
//! (Python's `opentelemetry-proto`, a decoder written apart from
//! authgate's encoder) on a free port, writing every span it receives as a
//! JSON line that [`Receiver::spans`] reads back. Its venv is made once by
//! `tests/otlp/venv.sh`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp")
}

/// The venv's python (made on first use; a failure fails the test).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| super::venv_python(&dir().join("venv.sh")))
}

/// Decode an `ExportTraceServiceRequest` with `opentelemetry-proto`: its
/// spans as the receiver writes them.
pub fn decode(body: &[u8]) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(dir().join("receiver.py"))
        .arg("--decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the decoder");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "opentelemetry-proto cannot decode it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&String::from_utf8(out.stdout).unwrap())
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A running receiver; killed when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    out: PathBuf,
    child: Child,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Receiver {
    /// A receiver on a free port answering 200.
    pub fn start() -> Receiver {
        Self::spawn(0, 200)
    }

    /// A receiver on a free port answering every export with `status`.
    pub fn answering(status: u16) -> Receiver {
        Self::spawn(0, status)
    }

    /// A receiver on `port` (to stand in for one that went away).
    pub fn on_port(port: u16) -> Receiver {
        Self::spawn(port, 200)
    }

    fn spawn(port: u16, status: u16) -> Receiver {
        let out = std::env::temp_dir().join(format!(
            "authgate-otlp-{}-{}.jsonl",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(python())
            .arg(dir().join("receiver.py"))
            .arg(&out)
            .args(["--port", &port.to_string(), "--status", &status.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port: u16 = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("receiver did not start: {first:?}"));
        Receiver {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            out,
            child,
        }
    }

    /// The base URL to configure as `tracing.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Value> {
        lines(&std::fs::read_to_string(&self.out).unwrap_or_default())
    }

    /// Wait until at least `n` spans have arrived; all of them.
    pub async fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} spans arrived: {spans:?}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}
