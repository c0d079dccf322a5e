//! Strapi's error envelope, `{"data":null,"error":{...}}`: the one renderer
//! shared by the gateway's denials (`authz::Denial`) and the management API's
//! errors, so the two can never drift apart.

/// Renders `{"data":null,"error":{"status":..,"name":..,"message":..,"details":{}}}`.
///
/// `name` and `message` are escaped as JSON strings, so a message that
/// quotes user input stays one well-formed document.
pub fn render(status: u16, name: &str, message: &str) -> String {
    let mut out = String::with_capacity(64 + name.len() + message.len());
    out.push_str(r#"{"data":null,"error":{"status":"#);
    out.push_str(&status.to_string());
    out.push_str(r#","name":"#);
    push_json_string(&mut out, name);
    out.push_str(r#","message":"#);
    push_json_string(&mut out, message);
    out.push_str(r#","details":{}}}"#);
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::{json, Value};

    #[test]
    fn matches_serde_for_every_awkward_character() {
        for msg in [
            "plain",
            "quote \" and \\ slash",
            "tab\tnl\ncr\r",
            "\u{1}\u{1f}",
            "é ☃ 😀",
        ] {
            let v: Value = serde_json::from_str(&render(418, "TeapotError", msg)).unwrap();
            assert_eq!(
                v,
                json!({"data": null, "error": {"status": 418, "name": "TeapotError", "message": msg, "details": {}}})
            );
        }
    }
}
