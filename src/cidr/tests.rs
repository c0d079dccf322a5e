use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn blocks_and_what_they_hold() {
    // (block, address, inside)
    let rows: &[(&str, &str, bool)] = &[
        ("10.0.0.0/8", "10.1.2.3", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("10.0.0.0/8", "::ffff:10.0.0.1", true),
        ("10.0.0.0/8", "::ffff:11.0.0.1", false),
        ("::ffff:10.0.0.0/104", "10.9.9.9", true),
        ("::ffff:10.0.0.0/104", "11.0.0.1", false),
        ("192.0.2.7", "192.0.2.7", true),
        ("192.0.2.7", "192.0.2.8", false),
        ("0.0.0.0/0", "203.0.113.1", true),
        ("0.0.0.0/0", "::ffff:203.0.113.1", true),
        ("0.0.0.0/0", "2001:db8::1", false),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("2001:db8::/32", "10.0.0.1", false),
        ("fd00::/8", "fd12::1", true),
        ("::1", "::1", true),
        ("::1", "127.0.0.1", false),
        ("127.0.0.0/8", "::1", false),
        ("2001:db8::1/128", "2001:db8::1", true),
        ("2001:db8::1/128", "2001:db8::2", false),
        // One address space: ::/0 holds IPv4 addresses too.
        ("::/0", "10.0.0.1", true),
        ("::/0", "2001:db8::1", true),
        // One address, in both spellings.
        ("10.0.0.1/32", "10.0.0.1", true),
        ("10.0.0.1/32", "::ffff:10.0.0.1", true),
    ];
    for (block, addr, inside) in rows {
        let c = Cidr::parse(block).unwrap();
        assert_eq!(c.contains(ip(addr)), *inside, "{block} ∋ {addr}");
    }
}

#[test]
fn canonical_text() {
    for (written, shown) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        (" 192.0.2.7 ", "192.0.2.7/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("2001:DB8:0:0::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("::/0", "::/0"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::fffe:0:0/95", "::fffe:0:0/95"),
    ] {
        let c = Cidr::parse(written).unwrap();
        assert_eq!(c.to_string(), shown, "{written}");
        assert_eq!(Cidr::parse(shown).unwrap(), c, "{shown} reads back");
    }
}

#[test]
fn what_is_refused_and_why() {
    let host = |t: &str, network: &str, host: &str| CidrError::HostBits {
        text: t.into(),
        network: Cidr::parse(network).unwrap(),
        host: Cidr::parse(host).unwrap(),
    };
    let prefix = |t: &str, max| CidrError::Prefix {
        text: t.into(),
        max,
    };
    let rows: &[(&str, CidrError)] = &[
        (
            "10.0.0.1/8",
            host("10.0.0.1/8", "10.0.0.0/8", "10.0.0.1/32"),
        ),
        (
            "2001:db8::1/32",
            host("2001:db8::1/32", "2001:db8::/32", "2001:db8::1/128"),
        ),
        ("10.0.0.0/33", prefix("10.0.0.0/33", 32)),
        ("2001:db8::/129", prefix("2001:db8::/129", 128)),
        ("10.0.0.0/", prefix("10.0.0.0/", 32)),
        ("10.0.0.0/+8", prefix("10.0.0.0/+8", 32)),
        ("10.0.0.0/08x", prefix("10.0.0.0/08x", 32)),
        ("10.0.0.0/8/8", prefix("10.0.0.0/8/8", 32)),
        ("nope", CidrError::NotAnAddress("nope".into())),
        ("", CidrError::NotAnAddress(String::new())),
        ("10.0.0/8", CidrError::NotAnAddress("10.0.0/8".into())),
        (
            "fe80::1%eth0",
            CidrError::NotAnAddress("fe80::1%eth0".into()),
        ),
        ("[::1]", CidrError::NotAnAddress("[::1]".into())),
    ];
    for (text, want) in rows {
        assert_eq!(Cidr::parse(text).as_ref(), Err(want), "{text}");
    }
    assert_eq!(
        Cidr::parse("10.0.0.1/8").unwrap_err().to_string(),
        "`10.0.0.1/8` has host bits set: the block is 10.0.0.0/8 (or write 10.0.0.1/32 for the one address)"
    );
    // trusted_proxies keeps reading them as the block.
    assert_eq!(
        Cidr::parse_masked("10.0.0.1/8").unwrap(),
        Cidr::parse("10.0.0.0/8").unwrap()
    );
    assert!(Cidr::parse_masked("10.0.0.0/33").is_err());
}

#[test]
fn networks_admit_only_their_blocks() {
    let open = Networks::default();
    assert!(open.admits(ip("203.0.113.9")) && open.admits(ip("2001:db8::1")));
    assert_eq!(
        Networks::new(Vec::new()),
        open,
        "an empty list pins nothing"
    );
    let pinned = Networks::new(vec![
        Cidr::parse("2001:db8::/32").unwrap(),
        Cidr::parse("10.0.0.0/8").unwrap(),
        Cidr::parse("10.0.0.0/8").unwrap(),
    ]);
    assert_eq!(pinned.as_slice().len(), 2, "stored once each");
    assert_eq!(pinned.as_slice()[0].to_string(), "10.0.0.0/8", "sorted");
    for (addr, admitted) in [
        ("10.0.0.1", true),
        ("::ffff:10.0.0.1", true),
        ("2001:db8::7", true),
        ("11.0.0.1", false),
        ("2001:db9::7", false),
        ("::1", false),
    ] {
        assert_eq!(pinned.admits(ip(addr)), admitted, "{addr}");
    }
    assert_eq!(
        std::mem::size_of::<Networks>(),
        8,
        "an unpinned record grows by a pointer, never an allocation"
    );
}
