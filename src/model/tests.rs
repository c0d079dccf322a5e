//! Unit tests of `model`.

#[test]
fn expiry_windows() {
    use std::time::Duration;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let day = Duration::from_secs(86_400);
    let rows = [
        (None, false),
        (Some(now - Duration::from_secs(1)), false),
        (Some(now), false),
        (Some(now + Duration::from_secs(1)), true),
        (Some(now + 7 * day), true),
        (Some(now + 7 * day + Duration::from_secs(1)), false),
    ];
    for (at, want) in rows {
        assert_eq!(super::expires_within(at, now, 7 * day), want, "{at:?}");
    }
}

use super::*;

#[test]
fn an_old_key_ends_at_the_earlier_of_its_overlap_and_the_token() {
    use std::time::Duration;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let hour = Duration::from_secs(3600);
    let record = |expires_at| TokenRecord {
        id: 1,
        kind: TokenKind::ContentApi,
        name: "t".into(),
        token_type: Some(ContentApiType::ReadOnly),
        expires_at,
        ends: Ending::Token,
        permissions: PermissionSet::default(),
        ownership: Ownership::None,
        rate_limit: RateOverride::default(),
        networks: Networks::default(),
    };
    // (token expiry, old key until) -> (expires_at, ends)
    let rows = [
        (None, now + hour, Some(now + hour), Ending::OldKey),
        (
            Some(now + 2 * hour),
            now + hour,
            Some(now + hour),
            Ending::OldKey,
        ),
        (
            Some(now + hour),
            now + 2 * hour,
            Some(now + hour),
            Ending::Token,
        ),
        (
            Some(now + hour),
            now + hour,
            Some(now + hour),
            Ending::Token,
        ),
    ];
    for (token, key_until, at, ends) in rows {
        let r = record(Expiry::from(token)).through_old_key(key_until);
        assert_eq!(
            (r.expires_at.get(), r.ends),
            (at, ends),
            "{token:?} {key_until:?}"
        );
    }
}

/// The old key's end rides in the record's padding (`ends` is one byte
/// where a second time would be 16), the expiry takes 8 bytes and the
/// networks a thin pointer: a cached token's record stays 72 bytes, and
/// its cache entry (see `cache::tests`) in its allocation size class.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
#[test]
fn the_record_keeps_its_size() {
    assert_eq!(std::mem::size_of::<TokenRecord>(), 72);
}

#[test]
fn expiry_round_trips_to_the_microsecond() {
    use std::time::Duration;
    let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_800_000_000_123_456);
    assert_eq!(Expiry::at(t).get(), Some(t));
    assert_eq!(Expiry::from(None).get(), None);
    assert!(Expiry::at(t).is_before(t + Duration::from_micros(1)));
    assert!(!Expiry::at(t).is_before(t));
    assert!(!Expiry::NEVER.is_before(t));
    assert!(Expiry::at(t) < Expiry::NEVER);
}

#[test]
fn rate_override_round_trips_in_four_bytes() {
    for v in [
        None,
        Some(0),
        Some(1),
        Some(i32::MAX as u32),
        Some(u32::MAX - 1),
    ] {
        assert_eq!(RateOverride::new(v).get(), v);
    }
    assert_eq!(RateOverride::new(Some(u32::MAX)).get(), None);
    assert_eq!(std::mem::size_of::<RateOverride>(), 4);
}

#[test]
fn permission_parse() {
    assert_eq!(
        Permission::parse("a.b").unwrap(),
        Permission::new("a.b", None)
    );
    assert_eq!(
        Permission::parse("plugin::x.read@api::a.a").unwrap(),
        Permission::new("plugin::x.read", Some("api::a.a".into()))
    );
    assert!(Permission::parse("").is_err());
    assert!(Permission::parse("a@").is_err());
    assert!(Permission::parse("a b").is_err());
    assert_eq!(Permission::parse("x@y").unwrap().to_string(), "x@y");
}

#[test]
fn grants_by_subject() {
    let set: PermissionSet = [
        Permission::new("read", Some("api::a.a".into())),
        Permission::new("settings", None),
    ]
    .into_iter()
    .collect();
    assert!(set.grants("read", Some("api::a.a")));
    assert!(!set.grants("read", Some("api::b.b")));
    assert!(
        !set.grants("read", None),
        "a subject-less check needs a subject-less permission"
    );
    assert!(set.grants("settings", None));
    assert!(
        set.grants("settings", Some("api::a.a")),
        "a subject-less permission covers every subject"
    );
    assert!(!set.grants("write", None));
    assert!(set.contains(&Permission::new("settings", None)));
    assert!(!set.contains(&Permission::new("read", None)));
    assert_eq!(set.len(), 2);
    let again: PermissionSet = set
        .to_sorted_vec()
        .into_iter()
        .chain(set.to_sorted_vec())
        .collect();
    assert_eq!(again, set);
}

#[test]
fn kinds_and_types_round_trip() {
    for k in [TokenKind::ContentApi, TokenKind::Admin] {
        assert_eq!(k.as_str().parse::<TokenKind>().unwrap(), k);
    }
    for t in [
        ContentApiType::ReadOnly,
        ContentApiType::FullAccess,
        ContentApiType::Custom,
    ] {
        assert_eq!(t.as_str().parse::<ContentApiType>().unwrap(), t);
    }
    assert!("x".parse::<TokenKind>().is_err());
    assert!("x".parse::<ContentApiType>().is_err());
}
