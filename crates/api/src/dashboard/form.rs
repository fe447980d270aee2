//! The bodies of the dashboard's editing forms: `application/x-www-form-urlencoded` and
//! `multipart/form-data` (RFC 7578; the script forms upload the detection and remediation
//! files). The body is already whole and within the server's body limit when it gets here
//! (`crate::server::read_body`, 413 beyond); parsing only splits it, with a cap on the number
//! of parts.

use http::HeaderMap;
use remediate_wire::ErrorKind;

use crate::error::ApiError;

/// At most this many fields and files in one form.
const MAX_PARTS: usize = 1000;

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub filename: String,
    pub bytes: Vec<u8>,
}

/// A form's fields (in order; a name may repeat) and files. A file input left empty (no file
/// chosen) is not among the files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form {
    pub fields: Vec<(String, String)>,
    pub files: Vec<(String, Upload)>,
}

impl Form {
    /// The first value of a field, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a field, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Every value of a field (checkboxes, multiple selects).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Was a checkbox ticked?
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The file uploaded in this input, if one was chosen.
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Parse a form body by its `Content-Type`.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (essence, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    match essence.trim().to_ascii_lowercase().as_str() {
        "application/x-www-form-urlencoded" | "" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| bad("The form is not valid UTF-8 text."))?;
            let fields = super::html::parse_pairs(text);
            if fields.len() > MAX_PARTS {
                return Err(bad(format!("A form has at most {MAX_PARTS} fields.")));
            }
            Ok(Form {
                fields,
                files: Vec::new(),
            })
        }
        "multipart/form-data" => {
            let boundary = parameter(params, "boundary")
                .filter(|b| !b.is_empty() && b.len() <= 70)
                .ok_or_else(|| bad("A multipart/form-data body needs its boundary (1 to 70 characters)."))?;
            multipart(body, &boundary)
        }
        other => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "A dashboard form is sent as application/x-www-form-urlencoded or multipart/form-data, not '{other}'."
            ),
        )),
    }
}

/// A parameter of a header value (`; name=value` or `; name="value"`).
fn parameter(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([';', ' ', '\t']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        if key == name {
            return Some(value);
        }
        rest = next;
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    let first = needle[0];
    let mut at = from;
    while at + needle.len() <= haystack.len() {
        let offset = haystack[at..=haystack.len() - needle.len()]
            .iter()
            .position(|b| *b == first)?;
        at += offset;
        if haystack[at..at + needle.len()] == *needle {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Split a `multipart/form-data` body (RFC 7578, RFC 2046 §5.1).
fn multipart(body: &[u8], boundary: &str) -> Result<Form, ApiError> {
    let malformed =
        || bad("The multipart/form-data body is malformed (its parts do not follow the boundary).");
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The first boundary (the preamble before it is ignored).
    let start = if body.starts_with(dash.as_bytes()) {
        0
    } else {
        find(body, delimiter.as_bytes(), 0).ok_or_else(malformed)? + 2
    };
    let mut at = start + dash.len();
    let mut form = Form::default();
    let mut parts = 0usize;
    loop {
        // After a boundary: `--` ends the body, CRLF starts a part.
        if body[at..].starts_with(b"--") {
            return Ok(form);
        }
        // Transport padding (spaces, tabs) may follow a boundary.
        while matches!(body.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err(malformed());
        }
        at += 2;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(bad(format!("A form has at most {MAX_PARTS} fields.")));
        }
        let head_end = if body[at..].starts_with(b"\r\n") {
            // A part without headers (and so without a name: refused below).
            (at, at + 2)
        } else {
            find(body, b"\r\n\r\n", at)
                .map(|end| (end, end + 4))
                .ok_or_else(malformed)?
        };
        let head = String::from_utf8_lossy(&body[at..head_end.0]);
        let content_start = head_end.1;
        let content_end = find(body, delimiter.as_bytes(), content_start).ok_or_else(malformed)?;
        let content = &body[content_start..content_end];
        at = content_end + delimiter.len();

        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let Some((header, value)) = line.split_once(':') else {
                continue;
            };
            if header.trim().eq_ignore_ascii_case("content-disposition") {
                let (kind, params) = value.split_once(';').unwrap_or((value, ""));
                if !kind.trim().eq_ignore_ascii_case("form-data") {
                    return Err(bad(
                        "Each part of a multipart/form-data body is 'Content-Disposition: form-data'.",
                    ));
                }
                name = parameter(params, "name");
                filename = parameter(params, "filename");
            }
        }
        let Some(name) = name else {
            return Err(bad(
                "A part of the multipart/form-data body has no name (Content-Disposition: form-data; name=\"…\").",
            ));
        };
        match filename {
            // A file input with no file chosen: an empty filename and no content.
            Some(filename) if filename.is_empty() && content.is_empty() => {}
            Some(filename) => form.files.push((
                name,
                Upload {
                    filename,
                    bytes: content.to_vec(),
                },
            )),
            None => form
                .fields
                .push((name, String::from_utf8_lossy(content).into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn multipart_fields_and_files_as_chromium_sends_them() {
        let body = "------WebKitFormBoundaryx7\r\n\
            Content-Disposition: form-data; name=\"csrf\"\r\n\r\n\
            abc\r\n\
            ------WebKitFormBoundaryx7\r\n\
            Content-Disposition: form-data; name=\"displayName\"\r\n\r\n\
            Disk \"cleanup\"\r\nline two\r\n\
            ------WebKitFormBoundaryx7\r\n\
            Content-Disposition: form-data; name=\"detection\"; filename=\"detect.sh\"\r\n\
            Content-Type: application/x-sh\r\n\r\n\
            #!/bin/sh\r\nexit 1\n\r\n\
            ------WebKitFormBoundaryx7\r\n\
            Content-Disposition: form-data; name=\"remediation\"; filename=\"\"\r\n\
            Content-Type: application/octet-stream\r\n\r\n\
            \r\n\
            ------WebKitFormBoundaryx7--\r\n";
        let form = parse(
            &headers("multipart/form-data; boundary=----WebKitFormBoundaryx7"),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(form.text("csrf"), "abc");
        assert_eq!(form.text("displayName"), "Disk \"cleanup\"\r\nline two");
        let file = form.file("detection").unwrap();
        assert_eq!(file.filename, "detect.sh");
        assert_eq!(file.bytes, b"#!/bin/sh\r\nexit 1\n");
        assert!(form.file("remediation").is_none(), "no file chosen");
    }

    #[test]
    fn binary_content_and_quoted_boundaries() {
        let mut body = b"preamble\r\n--\"b\"\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a b.bin\"\r\n\r\n".to_vec();
        body.extend_from_slice(&[0, 255, 13, 10, 45, 45, 0]);
        body.extend_from_slice(b"\r\n--\"b\"--");
        // The boundary here is literally `"b"`: quoted in the header as `"\"b\""`.
        let form = parse(
            &headers("multipart/form-data; boundary=\"\\\"b\\\"\""),
            &body,
        )
        .unwrap();
        assert_eq!(
            form.file("f").unwrap().bytes,
            vec![0, 255, 13, 10, 45, 45, 0]
        );
        assert_eq!(form.file("f").unwrap().filename, "a b.bin");
    }

    #[test]
    fn malformed_bodies_are_400_not_panics() {
        let h = headers("multipart/form-data; boundary=zz");
        for body in [
            "",
            "--zz",
            "--zz\r\n",
            "--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
            "--zz\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--zz--",
            "--zz\r\nContent-Type: text/plain\r\n\r\nx\r\n--zz--",
            "--zzjunk",
            "--zz\r\n\r\nx\r\n--zz--",
        ] {
            let error = parse(&h, body.as_bytes()).unwrap_err();
            assert_eq!(error.kind, ErrorKind::BadRequest, "{body:?}");
        }
        assert!(parse(&headers("multipart/form-data"), b"x").is_err());
        assert_eq!(
            parse(&headers("application/json"), b"{}").unwrap_err().kind,
            ErrorKind::UnsupportedMediaType
        );
        let ok = parse(&h, b"--zz--").unwrap();
        assert!(ok.fields.is_empty());
    }

    #[test]
    fn urlencoded_repeats_and_checkboxes() {
        let form = parse(
            &headers("application/x-www-form-urlencoded"),
            b"a=1&g=x&g=y&c=on&t=a+b%26c",
        )
        .unwrap();
        assert_eq!(form.all("g"), ["x", "y"]);
        assert!(form.checked("c"));
        assert!(!form.checked("d"));
        assert_eq!(form.text("t"), "a b&c");
    }
}
