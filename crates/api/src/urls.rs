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

/// The path of a URL in a body (`@odata.bind`, `@odata.id`): absolute (any scheme and host) or
/// relative, without its query and fragment.
pub(crate) fn url_path(url: &str) -> &str {
    let path = match url.find("://") {
        Some(scheme_end) => {
            let after = &url[scheme_end + 3..];
            after.find('/').map_or("", |slash| &after[slash..])
        }
        None => url,
    };
    path.split(['?', '#']).next().unwrap_or("")
}
