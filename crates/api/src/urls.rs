//! URL helpers: keys in path segments and in OData key syntax.

pub(crate) use remediate_domain::collections::odata_key;

/// Percent-encode a key for a path segment.
pub(crate) fn enc(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b':');
    percent_encoding::utf8_percent_encode(key, SEGMENT).to_string()
}
