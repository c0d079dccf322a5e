//! gRPC on the decision listener: the framing, and the place `Check` is
//! answered.
//!
//! Envoy's ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`)
//! arrives on the decision port as HTTP/2 (cleartext with prior knowledge,
//! or TLS with ALPN `h2`). This file owns what is gRPC's rather than
//! Envoy's: one length-prefixed message in ([`message`]), and one out with
//! `grpc-status` in the trailers ([`GrpcReply::response`]). What the
//! message means (the prost `CheckRequest`/`CheckResponse`, the request it
//! names, the gate's answer in `ok_response`/`denied_response`) is
//! [`super::grpc`]'s.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use hyper::body::Frame;

/// The path of Envoy's `Check`.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// gRPC status codes the decision listener answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// Is this a gRPC call (`content-type: application/grpc[+proto|;...]`)?
pub fn is_grpc(h: &HeaderMap) -> bool {
    h.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/grpc") && matches!(v.get(16), None | Some(b'+') | Some(b';'))
    })
}

/// Why a gRPC request body is not one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the message is compressed (no grpc-encoding is accepted)")]
    Compressed,
    #[error("the body is not exactly one length-prefixed message")]
    Framing,
}

/// The one uncompressed message of a unary call's body (5-byte prefix:
/// compressed flag, big-endian length).
pub fn message(body: Bytes) -> Result<Bytes, FrameError> {
    let (flag, len) = match body.get(..5) {
        Some(p) => (p[0], u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize),
        None => return Err(FrameError::Framing),
    };
    if flag != 0 {
        return Err(FrameError::Compressed);
    }
    if body.len() - 5 != len {
        return Err(FrameError::Framing);
    }
    Ok(body.slice(5..))
}

/// One unary answer: a status, and the encoded response message when the
/// status is `OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcReply {
    pub code: Code,
    pub message: &'static str,
    /// The encoded response message (`CheckResponse`).
    pub body: Option<Bytes>,
}

impl GrpcReply {
    /// `OK` with an encoded response message.
    pub fn ok(body: Bytes) -> Self {
        Self {
            code: Code::Ok,
            message: "",
            body: Some(body),
        }
    }

    /// A status without a message.
    pub fn status(code: Code, message: &'static str) -> Self {
        Self {
            code,
            message,
            body: None,
        }
    }

    /// The HTTP/2 response: `200`, `content-type: application/grpc`, the
    /// framed message and `grpc-status` (and `grpc-message`) in the
    /// trailers; without a message, all in the headers ("Trailers-Only").
    pub fn response(self) -> Response<GrpcBody> {
        let mut status = HeaderMap::new();
        status.insert("grpc-status", HeaderValue::from(self.code as u32));
        if !self.message.is_empty() {
            status.insert("grpc-message", HeaderValue::from_static(self.message));
        }
        let (body, trailers_only) = match self.body {
            Some(m) => {
                let mut framed = BytesMut::with_capacity(5 + m.len());
                framed.put_u8(0);
                framed.put_u32(u32::try_from(m.len()).unwrap_or(u32::MAX));
                framed.put_slice(&m);
                let body = GrpcBody {
                    data: Some(framed.freeze()),
                    trailers: Some(status),
                };
                (body, None)
            }
            None => (GrpcBody::default(), Some(status)),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        if let Some(status) = trailers_only {
            h.extend(status);
        }
        resp
    }
}

/// A unary gRPC response body: one data frame, then the trailers.
#[derive(Debug, Default)]
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(d) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn grpc_content_types() {
        let ct = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_grpc(&h)
        };
        assert!(ct("application/grpc"));
        assert!(ct("application/grpc+proto"));
        assert!(ct("application/grpc;charset=utf-8"));
        assert!(!ct("application/grpc-web"));
        assert!(!ct("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn one_message_in() {
        assert_eq!(
            message(Bytes::from_static(b"\0\0\0\0\x03abc")),
            Ok(Bytes::from_static(b"abc"))
        );
        assert_eq!(message(Bytes::from_static(b"\0\0\0\0\0")), Ok(Bytes::new()));
        for bad in [&b""[..], b"\0\0\0", b"\0\0\0\0\x03ab", b"\0\0\0\0\x01ab"] {
            assert_eq!(
                message(Bytes::copy_from_slice(bad)),
                Err(FrameError::Framing)
            );
        }
        assert_eq!(
            message(Bytes::from_static(b"\x01\0\0\0\x01a")),
            Err(FrameError::Compressed)
        );
    }

    #[tokio::test]
    async fn one_message_out_then_the_status() {
        let resp = GrpcReply::ok(Bytes::from_static(b"xyz")).response();
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/grpc");
        assert!(resp.headers().get("grpc-status").is_none());
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x03xyz");

        let resp = GrpcReply::status(Code::Unimplemented, "compressed").response();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "12");
        assert_eq!(resp.headers()["grpc-message"], "compressed");
        assert!(hyper::body::Body::is_end_stream(resp.body()));
    }
}
