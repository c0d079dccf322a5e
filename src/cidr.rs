//! Address blocks (CIDR): `server.trusted_proxies`, and the networks a
//! token may be used from ([`Networks`]).
//!
//! **One address space.** An IPv4 address is read as its IPv4-mapped IPv6
//! address (`10.0.0.1` is `::ffff:10.0.0.1`), so a block and an address
//! are compared as two 128-bit numbers, whatever family either was
//! written in. A client that reaches a dual-stack listener as
//! `::ffff:10.0.0.1` is the same client as `10.0.0.1` on an IPv4
//! listener, and both are in `10.0.0.0/8`; `::ffff:10.0.0.0/104` is
//! `10.0.0.0/8` (and is shown so). A consequence worth knowing: `::/0`
//! holds every address, IPv4 ones included.
//!
//! **Host bits.** [`Cidr::parse`] refuses a block with bits set past its
//! prefix (`10.0.0.1/8`): whether that meant `10.0.0.0/8` or the one
//! address `10.0.0.1/32` is not ours to guess, and a token's networks are
//! stored for good. [`Cidr::parse_masked`] clears them instead, which is
//! what `server.trusted_proxies` has always done. An address without a
//! prefix is one address (`/32`, `/128`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block, in the one 128-bit address space (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The block's first address; no bit outside `mask` is set.
    net: u128,
    /// `prefix` leading ones.
    mask: u128,
}

/// The prefix of `::ffff:0:0/96`, where the IPv4 addresses live.
const V4_MAPPED: u128 = 0xffff << 32;
/// The prefix length of [`V4_MAPPED`].
const V4_BITS: u8 = 96;

/// Why a text is not an address block. Each message names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address or CIDR block")]
    NotAnAddress(String),
    #[error("`{text}`: the prefix length must be 0 to {max}")]
    Prefix { text: String, max: u8 },
    #[error(
        "`{text}` has host bits set: the block is {network} (or write {host} for the one address)"
    )]
    HostBits {
        text: String,
        network: Cidr,
        host: Cidr,
    },
}

/// An address in the one address space.
pub fn address_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => V4_MAPPED | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

impl Cidr {
    /// A block as written: `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`
    /// (one address). Surrounding blanks are ignored; host bits are refused.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let (cidr, has_host_bits) = Self::read(s)?;
        if has_host_bits {
            let addr = s.trim().split('/').next().unwrap_or_default();
            return Err(CidrError::HostBits {
                text: s.trim().to_owned(),
                network: cidr,
                host: Self::read(addr)?.0,
            });
        }
        Ok(cidr)
    }

    /// Like [`Cidr::parse`], with host bits cleared (`10.0.0.1/8` is
    /// `10.0.0.0/8`): `server.trusted_proxies`.
    pub fn parse_masked(s: &str) -> Result<Self, CidrError> {
        Ok(Self::read(s)?.0)
    }

    /// The block, and whether the text set bits past its prefix.
    fn read(s: &str) -> Result<(Self, bool), CidrError> {
        let text = s.trim();
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| CidrError::NotAnAddress(text.to_owned()))?;
        let (max, offset) = match addr {
            IpAddr::V4(_) => (32, V4_BITS),
            IpAddr::V6(_) => (128, 0),
        };
        let prefix = match p {
            None => max,
            // Digits only: `u8::from_str` would take `+8`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix {
                    text: text.to_owned(),
                    max,
                })?,
            Some(_) => {
                return Err(CidrError::Prefix {
                    text: text.to_owned(),
                    max,
                })
            }
        };
        let bits = address_bits(addr);
        let mask = mask(prefix + offset);
        Ok((
            Self {
                net: bits & mask,
                mask,
            },
            bits & !mask != 0,
        ))
    }

    /// Is `ip` in the block?
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_bits(address_bits(ip))
    }

    /// [`Cidr::contains`] for an address already in the one address space.
    #[inline]
    pub fn contains_bits(&self, bits: u128) -> bool {
        bits & self.mask == self.net
    }

    /// The prefix length in the 128-bit space.
    fn prefix(&self) -> u8 {
        self.mask.leading_ones() as u8
    }

    /// IPv4 when the block lies within `::ffff:0:0/96`.
    fn as_v4(&self) -> Option<(Ipv4Addr, u8)> {
        let p = self.prefix();
        (p >= V4_BITS && self.net & mask(V4_BITS) == V4_MAPPED)
            .then(|| (Ipv4Addr::from(self.net as u32), p - V4_BITS))
    }
}

/// The canonical form: `10.0.0.0/8`, `192.0.2.7/32`, `2001:db8::/32`
/// (IPv4 for blocks of IPv4 addresses, always with the prefix).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_v4() {
            Some((a, p)) => write!(f, "{a}/{p}"),
            None => write!(f, "{}/{}", Ipv6Addr::from(self.net), self.prefix()),
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The most networks a token may be pinned to: each is checked on every
/// request of the token.
pub const MAX_NETWORKS: usize = 64;

/// The networks a token may be used from, as the decision reads them.
/// Unpinned (the default, and most tokens): no allocation, and admitting
/// an address costs one branch.
///
/// A thin pointer (8 bytes) to the blocks: the record of every cached token
/// carries one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Option<Box<Blocks>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Blocks(Box<[Cidr]>);

impl Networks {
    /// Pinned to `blocks`; none: not pinned.
    pub fn new(blocks: Vec<Cidr>) -> Self {
        if blocks.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new(Blocks(canonical(blocks).into_boxed_slice()))))
        }
    }

    /// May a request from `ip` use the token?
    #[inline]
    pub fn admits(&self, ip: IpAddr) -> bool {
        match &self.0 {
            None => true,
            Some(blocks) => {
                let bits = address_bits(ip);
                blocks.0.iter().any(|b| b.contains_bits(bits))
            }
        }
    }

    pub fn as_slice(&self) -> &[Cidr] {
        self.0.as_ref().map_or(&[], |b| &b.0)
    }
}

/// A list of blocks in its stored form: sorted, each once.
pub fn canonical(mut blocks: Vec<Cidr>) -> Vec<Cidr> {
    blocks.sort_unstable();
    blocks.dedup();
    blocks
}

#[cfg(test)]
mod tests;
