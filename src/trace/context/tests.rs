//! `traceparent`: the spec's examples and its test suite's cases as a
//! table, a round trip of every value written, and agreement with a
//! reference reader written apart from `parse` (splitting on dashes).

use proptest::prelude::*;

use super::*;

const ID: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

/// A read value: trace id, parent id (hex) and flags.
type Read = Option<(String, String, u8)>;

fn parsed(v: &str) -> Read {
    TraceParent::parse(v.as_bytes()).map(|p| {
        (
            p.trace_id.to_string(),
            p.parent_id.to_string(),
            p.flags.bits(),
        )
    })
}

#[test]
fn table() {
    let ok = |flags: u8| Some((ID.to_owned(), PARENT.to_owned(), flags));
    let cases: &[(&str, Read)] = &[
        (&format!("00-{ID}-{PARENT}-01"), ok(1)),
        (&format!("00-{ID}-{PARENT}-00"), ok(0)),
        (&format!("00-{ID}-{PARENT}-03"), ok(3)),
        // Unknown flags are dropped.
        (&format!("00-{ID}-{PARENT}-ff"), ok(3)),
        (&format!("00-{ID}-{PARENT}-09"), ok(1)),
        // Optional whitespace around the value.
        (&format!(" \t00-{ID}-{PARENT}-01 \t"), ok(1)),
        // Version 00 is exactly 55 characters.
        (&format!("00-{ID}-{PARENT}-01."), None),
        (
            &format!("00-{ID}-{PARENT}-01-what-the-future-will-be-like"),
            None,
        ),
        // A future version: read as 00 when a dash or the end follows.
        (&format!("cc-{ID}-{PARENT}-01"), ok(1)),
        (
            &format!("cc-{ID}-{PARENT}-01-what-the-future-will-be-like"),
            ok(1),
        ),
        (
            &format!("cc-{ID}-{PARENT}-01.what-the-future-will-be-like"),
            None,
        ),
        (&format!("01-{ID}-{PARENT}-ff-x"), ok(3)),
        // Version ff is forbidden; versions are two lower-case hex digits.
        (&format!("ff-{ID}-{PARENT}-01"), None),
        (&format!("Cc-{ID}-{PARENT}-01"), None),
        (&format!(".0-{ID}-{PARENT}-01"), None),
        (&format!("0.-{ID}-{PARENT}-01"), None),
        (&format!("000-{ID}-{PARENT}-01"), None),
        (&format!("0-{ID}-{PARENT}-01"), None),
        // Ids: all zeros, wrong length, non-hex, upper case.
        (&format!("00-{}-{PARENT}-01", "0".repeat(32)), None),
        (&format!("00-{ID}-{}-01", "0".repeat(16)), None),
        (&format!("00-{ID}3-{PARENT}-01"), None),
        (&format!("00-{}-{PARENT}-01", &ID[1..]), None),
        (&format!("00-{ID}-{PARENT}7-01"), None),
        (&format!("00-{ID}-{}-01", &PARENT[1..]), None),
        (&format!("00-.{}-{PARENT}-01", &ID[1..]), None),
        (&format!("00-{ID}-{}.-01", &PARENT[..15]), None),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            None,
        ),
        // Flags: two lower-case hex digits.
        (&format!("00-{ID}-{PARENT}-.0"), None),
        (&format!("00-{ID}-{PARENT}-0."), None),
        (&format!("00-{ID}-{PARENT}-0A"), None),
        (&format!("00-{ID}-{PARENT}-001"), None),
        (&format!("00-{ID}-{PARENT}-1"), None),
        // Dashes where the fields end.
        (&format!("00_{ID}-{PARENT}-01"), None),
        (&format!("00-{ID}_{PARENT}-01"), None),
        (&format!("00-{ID}-{PARENT}_01"), None),
        ("", None),
    ];
    for (value, want) in cases {
        assert_eq!(&parsed(value), want, "{value:?}");
    }
}

#[test]
fn the_specs_example() {
    let p = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(p.parent_id.to_string(), "00f067aa0ba902b7");
    assert!(p.flags.sampled());
    assert!(!p.flags.random());
    assert_eq!(
        p.encode().as_str(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
}

#[test]
fn a_future_version_is_written_as_00() {
    let p = TraceParent::parse(format!("cc-{ID}-{PARENT}-ff-extra").as_bytes()).unwrap();
    assert_eq!(p.encode().as_str(), format!("00-{ID}-{PARENT}-03"));
}

#[test]
fn one_field_only() {
    let mut h = HeaderMap::new();
    assert_eq!(TraceParent::from_headers(&h), None);
    let v = http::HeaderValue::from_str(&format!("00-{ID}-{PARENT}-01")).unwrap();
    h.append(TRACEPARENT, v.clone());
    assert!(TraceParent::from_headers(&h).is_some());
    h.append(TRACEPARENT, v);
    assert_eq!(TraceParent::from_headers(&h), None);
}

#[test]
fn randomness_is_the_right_most_seven_bytes() {
    let mut id = TraceId([0xff; 16]);
    assert_eq!(id.randomness(), (1 << 56) - 1);
    id.0[9] = 0;
    assert_eq!(id.randomness(), (1 << 48) - 1);
    id.0 = [0; 16];
    id.0[15] = 5;
    assert_eq!(id.randomness(), 5);
}

/// The reference: the value split on `-`, each field checked by its own
/// rule; written without `parse`'s offsets.
fn reference(v: &str) -> Read {
    let v = v.trim_matches([' ', '\t']);
    let fields: Vec<&str> = v.split('-').collect();
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    if fields.len() < 4 || !lower_hex(fields[0], 2) || fields[0] == "ff" {
        return None;
    }
    if fields[0] == "00" && fields.len() != 4 {
        return None;
    }
    let (id, parent, flags) = (fields[1], fields[2], fields[3]);
    if !lower_hex(id, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
        return None;
    }
    if id.chars().all(|c| c == '0') || parent.chars().all(|c| c == '0') {
        return None;
    }
    let bits = u8::from_str_radix(flags, 16).ok()? & 0b11;
    Some((id.to_owned(), parent.to_owned(), bits))
}

fn hex_of(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            8 => proptest::char::range('0', '9'),
            8 => proptest::char::range('a', 'f'),
            1 => Just('A'),
            1 => Just('g'),
            1 => Just('0'),
        ],
        len,
    )
    .prop_map(|c| c.into_iter().collect())
}

/// Values near valid ones: each field usually of the right length and
/// alphabet, sometimes not; sometimes zeros; sometimes more fields.
fn near_traceparent() -> impl Strategy<Value = String> {
    let version = prop_oneof![
        Just("00".to_owned()),
        Just("ff".to_owned()),
        hex_of(2),
        hex_of(1),
        hex_of(3)
    ];
    let id =
        prop_oneof![8 => hex_of(32), 1 => Just("0".repeat(32)), 1 => hex_of(31), 1 => hex_of(33)];
    let parent =
        prop_oneof![8 => hex_of(16), 1 => Just("0".repeat(16)), 1 => hex_of(15), 1 => hex_of(17)];
    let flags = prop_oneof![8 => hex_of(2), 1 => hex_of(1), 1 => hex_of(3)];
    let tail = prop_oneof![4 => Just(String::new()), 1 => Just("-x".to_owned()), 1 => Just(".x".to_owned()), 1 => Just("-".to_owned())];
    let pad = prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\t")];
    (version, id, parent, flags, tail, pad)
        .prop_map(|(v, i, p, f, t, pad)| format!("{pad}{v}-{i}-{p}-{f}{t}{pad}"))
}

proptest! {
    #[test]
    fn parse_agrees_with_the_reference(v in near_traceparent()) {
        prop_assert_eq!(parsed(&v), reference(&v), "{:?}", v);
    }

    #[test]
    fn what_is_written_reads_back(
        id in any::<[u8; 16]>(),
        parent in any::<[u8; 8]>(),
        flags in any::<u8>(),
    ) {
        prop_assume!(id != [0; 16] && parent != [0; 8]);
        let p = TraceParent { trace_id: TraceId(id), parent_id: SpanId(parent), flags: TraceFlags::new(flags) };
        let written = p.encode();
        prop_assert_eq!(written.as_bytes().len(), TRACEPARENT_LEN);
        prop_assert_eq!(TraceParent::parse(written.as_bytes()), Some(p));
        // And the reference reads it the same way.
        prop_assert_eq!(
            reference(written.as_str()),
            Some((hex::encode(id), hex::encode(parent), flags & 0b11))
        );
    }
}
