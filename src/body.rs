//! The body of every request the gateway forwards.
//!
//! Either what hyper is streaming from the client, or a buffer the gateway
//! made itself (a GraphQL body read to sniff its operation). The proxy
//! builds it and the upstream client sends it, so the type lives here,
//! below both. (The response side's body is `proxy::ResponseBody`: the
//! upstream client's body or an error envelope.)

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// The body of every request the gateway forwards.
pub type ForwardBody = Either<Incoming, Full<Bytes>>;
