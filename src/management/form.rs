//! `application/x-www-form-urlencoded` bodies, as browsers send forms:
//! `name=value` pairs joined by `&`, `+` for a space, `%XX` escapes. A name
//! may repeat (checkboxes). Anything that does not decode to UTF-8 is an
//! error, never a guess.

/// A decoded form body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed form body")]
pub struct FormError;

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut pairs = Vec::new();
        for part in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match part.iter().position(|b| *b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Self { pairs })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(s: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = s.get(i + 1).copied().and_then(hex).ok_or(FormError)?;
                let l = s.get(i + 2).copied().and_then(hex).ok_or(FormError)?;
                out.push(h << 4 | l);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_browser_forms() {
        let f = Form::parse(
            b"name=My+token&description=a%26b%3Dc&permission=api%3A%3Aa.a.find&permission=x&empty=&flag",
        )
        .unwrap();
        assert_eq!(f.get("name"), Some("My token"));
        assert_eq!(f.get("description"), Some("a&b=c"));
        assert_eq!(
            f.all("permission").collect::<Vec<_>>(),
            vec!["api::a.a.find", "x"]
        );
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.get("missing"), None);
        assert_eq!(Form::parse(b"").unwrap(), Form::default());
        assert_eq!(
            Form::parse("n=%C3%A9t%C3%A9".as_bytes()).unwrap().get("n"),
            Some("été")
        );
    }

    #[test]
    fn rejects_bad_escapes() {
        assert_eq!(Form::parse(b"a=%zz"), Err(FormError));
        assert_eq!(Form::parse(b"a=%4"), Err(FormError));
        assert_eq!(Form::parse(b"a=%ff"), Err(FormError), "not UTF-8");
    }
}
