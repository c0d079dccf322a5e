//! One upstream connection: its stream, what was read past the last
//! response, and one request-response exchange over it.
//!
//! The exchange runs in the task of the client connection that asked for
//! it: the request head goes out in one write, the response head is read
//! into the connection's buffer and parsed in place, and a small response
//! body that arrived with its head is handed on as it is. Only a body that
//! is still arriving keeps the connection busy ([`UpstreamBody`]); it puts
//! the connection back where it came from once that body is over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use http_body_util::{BodyExt, Either};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::wire::{self, BodyFraming, RequestFraming, ResponseHead};
use crate::body::ForwardBody;

/// Bytes asked of the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// The largest body the gateway holds that goes out in the write of the
/// request head; a larger one is streamed beside the reading of the
/// response, so an upstream that answers before reading it is heard.
const INLINE_BODY: u64 = 64 * 1024;

/// The stream under a connection: plain TCP or TLS over it.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, b),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where a connection goes back to when its response is over: the slot of
/// the client connection it serves.
pub type Home = Arc<Mutex<Option<Conn>>>;

/// How long a response body may stay silent once its head is in
/// (`upstream.body_idle_timeout`), and the count of bodies that did.
#[derive(Clone)]
pub struct BodyIdle {
    pub after: Duration,
    pub expired: prometheus::IntCounter,
}

/// A request ready to write: its head, with the body when the gateway
/// holds it; otherwise the body still to stream.
pub struct Request {
    method: Method,
    head: Vec<u8>,
    body: Option<ForwardBody>,
    chunked: bool,
}

impl Request {
    /// `head` is the request head (`wire::write_request_head`, framed by
    /// `framing`); a body the gateway holds is appended to it, so that
    /// both go out in one write.
    pub async fn new(
        method: Method,
        mut head: Vec<u8>,
        body: ForwardBody,
        framing: RequestFraming,
    ) -> Self {
        let small = body.size_hint().exact().is_some_and(|n| n <= INLINE_BODY);
        let body = match body {
            Either::Right(full) if framing != RequestFraming::Chunked && small => {
                match full.collect().await {
                    Ok(b) => head.extend_from_slice(&b.to_bytes()),
                    Err(never) => match never {},
                }
                None
            }
            Either::Left(incoming) if incoming.is_end_stream() => None,
            other => Some(other),
        };
        Self {
            method,
            head,
            body,
            chunked: framing == RequestFraming::Chunked,
        }
    }
}

/// How an exchange failed.
pub enum ExchangeError {
    /// Nothing of the request reached the upstream (the connection was
    /// found closed at the first write): it may be sent again.
    Unsent(Request, io::Error),
    /// It failed after (part of) the request was written, or the client's
    /// body failed: never sent again.
    Failed(ExchangeFailure),
}

/// Why an exchange failed once (part of) the request was written. Each
/// says its own step; its cause is its `source` (not repeated here).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeFailure {
    #[error("{0}")]
    Io(&'static str, #[source] io::Error),
    #[error("reading the response")]
    Wire(#[source] wire::WireError),
    #[error("the upstream closed the connection before a response")]
    Closed,
    #[error("reading the client's body")]
    ClientBody(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<ExchangeFailure> for ExchangeError {
    fn from(f: ExchangeFailure) -> Self {
        Self::Failed(f)
    }
}

/// An open upstream connection.
pub struct Conn {
    io: Io,
    buf: BytesMut,
}

impl Conn {
    pub fn new(io: Io) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Is an idle connection still fit to carry a request? It is not when
    /// the upstream has closed it or written something nobody asked for
    /// (an unasked response must never answer the next request, nor
    /// another client's). Asks the socket itself (one `recv` with
    /// `MSG_PEEK`), not the readiness the runtime last saw: bytes that
    /// arrived since then are not missed.
    pub async fn is_fit(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        // Under TLS, first what rustls holds already (read, or decrypted).
        if let Io::Tls(_) = self.io {
            let io = &mut self.io;
            let quiet = std::future::poll_fn(|cx| {
                let mut probe = [0u8; 1];
                let mut rb = ReadBuf::new(&mut probe);
                Poll::Ready(Pin::new(&mut *io).poll_read(cx, &mut rb).is_pending())
            })
            .await;
            if !quiet {
                return false;
            }
        }
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(self.tcp()).peek(&mut probe),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// The TCP socket under the stream.
    pub(super) fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Write a request and read its response head. Returns the head and
    /// whether the request went out whole (a response that came before the
    /// body was sent leaves the connection unfit for another).
    pub async fn exchange(&mut self, req: Request) -> Result<(ResponseHead, bool), ExchangeError> {
        match self.io.write(&req.head).await {
            Ok(n) if n > 0 => {
                if let Err(e) = self.write_rest(&req.head[n..]).await {
                    return Err(ExchangeFailure::Io("writing the request", e).into());
                }
            }
            Ok(_) => return Err(ExchangeError::Unsent(req, io::ErrorKind::WriteZero.into())),
            Err(e) => return Err(ExchangeError::Unsent(req, e)),
        }
        match req.body {
            None => Ok((self.read_head(&req.method).await?, true)),
            Some(body) => {
                self.stream_body_and_read_head(&req.method, body, req.chunked)
                    .await
            }
        }
    }

    async fn write_rest(&mut self, rest: &[u8]) -> io::Result<()> {
        self.io.write_all(rest).await?;
        self.io.flush().await
    }

    /// Send the body while watching for the response: an upstream may
    /// answer (a 413, a redirect) before it has read the whole body.
    async fn stream_body_and_read_head(
        &mut self,
        method: &Method,
        body: ForwardBody,
        chunked: bool,
    ) -> Result<(ResponseHead, bool), ExchangeError> {
        let (mut rd, mut wr) = tokio::io::split(&mut self.io);
        let send = send_body(&mut wr, body, chunked);
        let read = read_head(&mut rd, &mut self.buf, method);
        tokio::pin!(send, read);
        let mut sending = true;
        let mut whole = false;
        loop {
            tokio::select! {
                biased;
                head = &mut read => return head.map(|h| (h, whole)),
                sent = &mut send, if sending => {
                    sending = false;
                    match sent {
                        Ok(()) => whole = true,
                        Err(SendError::Client(e)) => return Err(ExchangeFailure::ClientBody(e).into()),
                        // The upstream stopped reading: its answer may
                        // already be on the way.
                        Err(SendError::Upstream) => {}
                    }
                }
            }
        }
    }

    async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, ExchangeError> {
        read_head(&mut self.io, &mut self.buf, method).await
    }

    /// The body that follows `head`: what of it is already here is handed
    /// on at once; otherwise the connection goes with the body (which
    /// fails when it stays silent past `idle`) and comes back `home` when
    /// it is over (and `reuse` allows).
    pub fn into_body(
        mut self,
        head: &ResponseHead,
        reuse: bool,
        home: &Home,
        idle: &BodyIdle,
    ) -> UpstreamBody {
        let reuse = reuse && head.keep_alive;
        let left = match head.framing {
            BodyFraming::Empty => {
                self.go_home(reuse, home);
                return UpstreamBody::empty();
            }
            BodyFraming::Length(n) if n <= self.buf.len() as u64 => {
                let data = self.buf.split_to(n as usize).freeze();
                self.go_home(reuse, home);
                return UpstreamBody {
                    state: State::Full(Some(data)),
                };
            }
            BodyFraming::Length(n) => Left::Length(n),
            BodyFraming::Chunked => Left::Chunked(wire::Chunked::Size),
            BodyFraming::UntilClose => Left::UntilClose,
        };
        UpstreamBody {
            state: State::Stream(Box::new(Streaming {
                conn: Some(self),
                left,
                reuse,
                home: home.clone(),
                idle: idle.clone(),
                timer: None,
                heard: false,
            })),
        }
    }

    /// Back to the client connection's slot, when it can carry another
    /// request: kept alive, framed exactly, and nothing read past the
    /// response. (Bytes that come later are caught when it is next taken:
    /// [`Conn::is_fit`].)
    fn go_home(self, reuse: bool, home: &Home) {
        if reuse && self.buf.is_empty() {
            let mut slot = home.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(self);
            }
        }
    }

    /// The stream and the bytes already read from it, for a tunnel.
    pub fn into_parts(self) -> (Io, Bytes) {
        (self.io, self.buf.freeze())
    }
}

/// Read more into the buffer; `Ok(0)` when the upstream has closed.
async fn fill<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    io.read_buf(buf).await
}

/// Read up to a final response head; interim (1xx) responses other than
/// 101 are passed over.
async fn read_head<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    method: &Method,
) -> Result<ResponseHead, ExchangeError> {
    loop {
        // An empty buffer (a fresh exchange) holds no head to parse yet.
        let parsed = match buf.is_empty() {
            true => Ok(None),
            false => wire::parse_response_head(buf, method),
        };
        match parsed {
            Ok(Some(head))
                if head.status.is_informational()
                    && head.status != http::StatusCode::SWITCHING_PROTOCOLS =>
            {
                continue
            }
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(ExchangeFailure::Wire(e).into()),
        }
        match fill(io, buf).await {
            Ok(0) => return Err(ExchangeFailure::Closed.into()),
            Ok(_) => {}
            Err(e) => return Err(ExchangeFailure::Io("reading the response", e).into()),
        }
    }
}

enum SendError {
    Client(Box<dyn std::error::Error + Send + Sync>),
    /// Writing to the upstream failed.
    Upstream,
}

async fn send_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut body: ForwardBody,
    chunked: bool,
) -> Result<(), SendError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(SendError::Client)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let mut piece = Bytes::from(wire::chunk_header(data.len()))
                .chain(data)
                .chain(&b"\r\n"[..]);
            w.write_all_buf(&mut piece).await
        } else {
            let mut data = data;
            w.write_all_buf(&mut data).await
        }
        .map_err(|_| SendError::Upstream)?;
    }
    if chunked {
        w.write_all(wire::LAST_CHUNK)
            .await
            .map_err(|_| SendError::Upstream)?;
    }
    w.flush().await.map_err(|_| SendError::Upstream)
}

/// A response body from the upstream.
pub struct UpstreamBody {
    state: State,
}

enum State {
    Empty,
    Full(Option<Bytes>),
    Stream(Box<Streaming>),
}

struct Streaming {
    conn: Option<Conn>,
    left: Left,
    reuse: bool,
    home: Home,
    idle: BodyIdle,
    /// Armed when the body first waits; moved on when it waits again
    /// after bytes came.
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes came since the timer was last set.
    heard: bool,
}

enum Left {
    Length(u64),
    Chunked(wire::Chunked),
    UntilClose,
}

/// A response body that ended before its framing said it would.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the upstream closed the connection in the middle of a body")]
    Truncated,
    #[error("reading the upstream's body")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// No body bytes for `upstream.body_idle_timeout`.
    #[error("the upstream sent no body bytes for {0:?}")]
    Idle(Duration),
}

impl UpstreamBody {
    pub fn empty() -> Self {
        Self {
            state: State::Empty,
        }
    }
}

impl Streaming {
    /// The next piece of the body out of the buffer, if there is one;
    /// `Ok(None)` with `left` at its end means the body is over.
    fn take(&mut self) -> Result<Option<Bytes>, BodyError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let buf = &mut conn.buf;
        let data = match &mut self.left {
            Left::Length(n) => {
                if buf.is_empty() || *n == 0 {
                    return Ok(None);
                }
                wire::take_up_to(buf, n)
            }
            Left::Chunked(c) => match c.step(buf)? {
                Some(d) => d,
                None => return Ok(None),
            },
            Left::UntilClose => {
                if buf.is_empty() {
                    return Ok(None);
                }
                buf.split().freeze()
            }
        };
        Ok(Some(data))
    }

    fn over(&self) -> bool {
        match self.left {
            Left::Length(n) => n == 0,
            Left::Chunked(c) => c == wire::Chunked::Done,
            Left::UntilClose => false,
        }
    }

    /// The body is over: the connection goes home if it may.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.go_home(self.reuse, &self.home);
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            match self.take() {
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Some(data)) => {
                    if self.over() {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(None) if self.over() => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let read = {
                let fut = fill(&mut conn.io, &mut conn.buf);
                tokio::pin!(fut);
                fut.poll(cx)
            };
            match read {
                Poll::Pending => return self.poll_idle(cx),
                Poll::Ready(Ok(0)) => {
                    self.conn = None;
                    return Poll::Ready(match self.left {
                        Left::UntilClose => None,
                        _ => Some(Err(BodyError::Truncated)),
                    });
                }
                Poll::Ready(Ok(_)) => self.heard = true,
                Poll::Ready(Err(e)) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// The body waits for the upstream: past the idle timeout since bytes
    /// last came, it fails (and the connection is dropped). Only silence
    /// while the body is asked for counts: a client that reads slowly
    /// leaves the timer where it was until bytes are asked for again.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        let after = self.idle.after;
        let timer = match &mut self.timer {
            Some(t) => {
                if self.heard {
                    t.as_mut().reset(tokio::time::Instant::now() + after);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(after))),
        };
        self.heard = false;
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.conn = None;
                self.idle.expired.inc();
                Poll::Ready(Some(Err(BodyError::Idle(after))))
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().state {
            State::Empty => Poll::Ready(None),
            State::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            State::Stream(s) => s.poll_next(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Empty => true,
            State::Full(data) => data.is_none(),
            State::Stream(s) => s.conn.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Empty => SizeHint::with_exact(0),
            State::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            State::Stream(s) => match s.left {
                Left::Length(n) => SizeHint::with_exact(n),
                _ => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
