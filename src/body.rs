//! The body types of the request path.
//!
//! A body is either one that streams (the client's request body from
//! hyper, the upstream's response body from the upstream client) or a
//! buffer the gateway made itself (an error envelope, a GraphQL body read
//! to sniff its operation). The proxy builds them and the upstream client
//! sends and makes them, so the types live here, below both.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use crate::upstream::UpstreamBody;

/// The body of every request the gateway forwards.
pub type ForwardBody = Either<Incoming, Full<Bytes>>;
/// The body of every response the gateway sends.
pub type ResponseBody = Either<UpstreamBody, Full<Bytes>>;
