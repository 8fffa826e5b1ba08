//! Plain text out of the document types we accept.

use crate::RagError;

/// How the extracted text is structured, which decides how it is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    /// Markdown, and HTML once rendered to Markdown-like text: split at headings first.
    Markdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub text: String,
    pub kind: TextKind,
}

/// The text of a document of `content_type` (parameters such as `charset` are ignored; text
/// must be UTF-8).
pub fn extract(content_type: &str, bytes: &[u8]) -> Result<Extracted, RagError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| RagError::Unreadable("text is not UTF-8".into()))
    };
    let (text, kind) = match mime.as_str() {
        "text/plain" => (utf8(bytes)?, TextKind::Plain),
        "text/markdown" | "text/x-markdown" => (utf8(bytes)?, TextKind::Markdown),
        "text/html" | "application/xhtml+xml" => {
            // Rendered as Markdown-like text: scripts and styles dropped, structure kept.
            let text = html2text::config::plain()
                .string_from_read(bytes, 100)
                .map_err(|e| RagError::Unreadable(e.to_string()))?;
            (text, TextKind::Markdown)
        }
        "application/pdf" => {
            let text = pdf_extract::extract_text_from_mem(bytes)
                .map_err(|e| RagError::Unreadable(format!("pdf: {e}")))?;
            (text, TextKind::Plain)
        }
        other => return Err(RagError::UnsupportedType(other.to_owned())),
    };
    if text.trim().is_empty() {
        return Err(RagError::Empty);
    }
    Ok(Extracted { text, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_loses_markup_scripts_and_styles() {
        let html = b"<html><head><style>p{color:red}</style><script>alert('x')</script></head>\
            <body><h1>Refunds</h1><p>Refunds take <b>14 days</b>.</p></body></html>";
        let e = extract("text/html; charset=utf-8", html).unwrap();
        assert!(e.text.contains("Refunds take 14 days"), "{}", e.text);
        assert!(
            !e.text.contains("alert") && !e.text.contains("color:red"),
            "{}",
            e.text
        );
    }

    #[test]
    fn pdf_text_is_extracted() {
        let pdf = include_bytes!("../../tenantgate-gateway/tests/data/acme-policy.pdf");
        let e = extract("application/pdf", pdf).unwrap();
        assert!(e.text.contains("Overtime compensation"), "{:?}", e.text);
    }

    #[test]
    fn unsupported_empty_and_non_utf8_are_refused() {
        assert!(matches!(
            extract("image/png", b"x"),
            Err(RagError::UnsupportedType(_))
        ));
        assert_eq!(extract("text/plain", b"  \n"), Err(RagError::Empty));
        assert!(matches!(
            extract("text/plain", &[0xff, 0xfe]),
            Err(RagError::Unreadable(_))
        ));
        assert!(matches!(
            extract("application/pdf", b"not a pdf"),
            Err(RagError::Unreadable(_))
        ));
    }
}
