//! Table tests of the media-type reader.

use super::*;

#[test]
fn media_types() {
    let json = Ok(Kind::Json);
    let rows: &[(&str, Result<Kind, Unjudgeable>)] = &[
        ("application/json", json.clone()),
        ("Application/JSON; charset=UTF-8", json.clone()),
        ("application/json;charset=\"utf-8\"", json.clone()),
        ("  application/json  ", json.clone()),
        ("application/json ; charset=utf8 ; q=1", json.clone()),
        ("application/json-patch+json", json.clone()),
        ("application/vnd.api+json", json.clone()),
        ("application/csp-report", json.clone()),
        ("application/scim+json", json.clone()),
        ("application/graphql+json", json.clone()),
        ("application/x-www-form-urlencoded", Ok(Kind::Form)),
        (
            "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",
            Ok(Kind::Form),
        ),
        ("application/graphql", Ok(Kind::Document)),
        (
            "multipart/form-data; boundary=----x1",
            Ok(Kind::Multipart {
                boundary: "----x1".into(),
            }),
        ),
        (
            "Multipart/Form-Data; BOUNDARY=\"a b\"",
            Ok(Kind::Multipart {
                boundary: "a b".into(),
            }),
        ),
        ("multipart/form-data", Err(Unjudgeable::MalformedMediaType)),
        (
            "multipart/form-data; boundary=\"a \"",
            Err(Unjudgeable::MalformedMediaType),
        ),
        (
            "multipart/form-data; boundary=a; boundary=b",
            Err(Unjudgeable::MalformedMediaType),
        ),
        (
            "multipart/form-data; boundary=a*b",
            Err(Unjudgeable::MalformedMediaType),
        ),
        (
            "application/json; charset=utf-16le",
            Err(Unjudgeable::Charset),
        ),
        (
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            Err(Unjudgeable::Charset),
        ),
        (
            "application/graphql; charset=\"UTF-7\"",
            Err(Unjudgeable::Charset),
        ),
        (
            "application/json; charset=utf-8; charset=utf-16",
            Err(Unjudgeable::MalformedMediaType),
        ),
        ("application/json;", Err(Unjudgeable::MalformedMediaType)),
        (
            "application/json; charset = utf-8",
            Err(Unjudgeable::MalformedMediaType),
        ),
        (
            "application/json; charset*=utf-8''x",
            Err(Unjudgeable::MalformedMediaType),
        ),
        (
            "application/json; x=\"a\\\"b\"",
            Err(Unjudgeable::MalformedMediaType),
        ),
        (
            "application/json, application/x-www-form-urlencoded",
            Err(Unjudgeable::MalformedMediaType),
        ),
        ("application /json", Err(Unjudgeable::MalformedMediaType)),
        ("application", Err(Unjudgeable::MalformedMediaType)),
        ("", Err(Unjudgeable::MalformedMediaType)),
        ("text/plain", Err(Unjudgeable::UnknownMediaType)),
        ("text/json", Err(Unjudgeable::UnknownMediaType)),
        ("application/xml", Err(Unjudgeable::UnknownMediaType)),
        ("application/jsonx", Err(Unjudgeable::UnknownMediaType)),
        (
            "multipart/mixed; boundary=a",
            Err(Unjudgeable::UnknownMediaType),
        ),
    ];
    for (value, want) in rows {
        assert_eq!(&kind(value.as_bytes()), want, "{value}");
    }
    assert_eq!(
        kind(b"application/json; charset=\xc3\xa9"),
        Err(Unjudgeable::MalformedMediaType)
    );
}

#[test]
fn headers() {
    let mut h = HeaderMap::new();
    assert_eq!(content_type(&h), Ok(None));
    assert_eq!(identity_coding(&h), Ok(()));
    h.append(CONTENT_TYPE, "application/json".parse().unwrap());
    assert_eq!(content_type(&h), Ok(Some(&b"application/json"[..])));
    h.append(CONTENT_TYPE, "application/json".parse().unwrap());
    assert_eq!(content_type(&h), Err(Unjudgeable::SeveralContentTypes));
    for ok in ["identity", "IDENTITY", "", " identity , identity"] {
        let mut h = HeaderMap::new();
        h.append(CONTENT_ENCODING, ok.parse().unwrap());
        assert_eq!(identity_coding(&h), Ok(()), "{ok}");
    }
    for coded in ["gzip", "identity, gzip", "deflate", "br", "x-gzip"] {
        let mut h = HeaderMap::new();
        h.append(CONTENT_ENCODING, coded.parse().unwrap());
        assert_eq!(
            identity_coding(&h),
            Err(Unjudgeable::ContentEncoding),
            "{coded}"
        );
    }
    let mut h = HeaderMap::new();
    h.append(CONTENT_ENCODING, "identity".parse().unwrap());
    h.append(CONTENT_ENCODING, "gzip".parse().unwrap());
    assert_eq!(identity_coding(&h), Err(Unjudgeable::ContentEncoding));
}
