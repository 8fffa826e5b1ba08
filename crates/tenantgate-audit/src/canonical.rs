//! The canonical JSON form records and signed messages are hashed in (see the crate docs).

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonError {
    #[error("canonical form allows integers only; found {0}")]
    Float(String),
    #[error("not serializable: {0}")]
    Serialize(String),
}

/// The canonical bytes of `value`.
pub fn canonical(value: &Value) -> Result<Vec<u8>, CanonError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(v: &Value, out: &mut Vec<u8>) -> Result<(), CanonError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if !(n.is_i64() || n.is_u64()) {
                return Err(CanonError::Float(n.to_string()));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => string(s, out)?,
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out)?;
            }
            out.push(b']');
        }
        Value::Object(m) => {
            // Sorted here, not by relying on serde_json's map type: a dependency enabling
            // `preserve_order` anywhere in the build would otherwise change every hash.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out)?;
                out.push(b':');
                write(&m[k], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) -> Result<(), CanonError> {
    serde_json::to_writer(&mut *out, s).map_err(|e| CanonError::Serialize(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_no_whitespace_escapes_minimal() {
        let v = json!({"b": [1, -2, {"z": null, "a": true}], "a": "x\"\n\u{e9}", "A": 0});
        let c = String::from_utf8(canonical(&v).unwrap()).unwrap();
        assert_eq!(
            c,
            r#"{"A":0,"a":"x\"\n├⌐","b":[1,-2,{"a":true,"z":null}]}"#.replace("├⌐", "\u{e9}")
        );
    }

    #[test]
    fn floats_are_refused() {
        assert!(matches!(
            canonical(&json!({"x": 1.5})),
            Err(CanonError::Float(_))
        ));
    }

    #[test]
    fn same_value_same_bytes_whatever_the_input_order() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"q":2,"p":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "y" : {"p":3, "q":2}, "x" : 1 }"#).unwrap();
        assert_eq!(canonical(&a).unwrap(), canonical(&b).unwrap());
    }
}
