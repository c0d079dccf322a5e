//! The one body type of the request path, both ways.
//!
//! A body is either what hyper is streaming (the client's request body, the
//! upstream's response body) or a buffer the gateway made itself (an error
//! envelope, a GraphQL body read to sniff its operation). The proxy builds
//! them and the upstream client sends them, so the type lives here, below
//! both.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// A streamed body or one the gateway holds in full.
pub type Body = Either<Incoming, Full<Bytes>>;
/// The body of every response the gateway sends.
pub type ResponseBody = Body;
/// The body of every request it forwards.
pub type ForwardBody = Body;
