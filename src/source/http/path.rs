//! Percent-encoding of URL path segments built from names the API returned.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything except RFC 3986 "unreserved" characters is encoded, so a
/// segment can never carry `/`, `?`, `#` or `%` into the URL's structure.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes one path segment; a `/` inside it becomes `%2F`.
///
/// `encode_segment("ctx/prod")` → `ctx%2Fprod`, `encode_segment("zürich")` →
/// `z%C3%BCrich`.
pub fn encode_segment(segment: &str) -> Cow<'_, str> {
    utf8_percent_encode(segment, SEGMENT).into()
}

/// Encodes each `/`-separated segment of `path`, keeping the `/`s as
/// separators. Use it for paths that embed slugs such as
/// `gh/zürich-labs/api`:
///
/// `encode_path("/project/gh/zürich-labs/api")` →
/// `/project/gh/z%C3%BCrich-labs/api`.
///
/// Dot segments (`.`, `..`) are left alone, and the client refuses a path
/// they would change (see [`super::HttpError::InvalidPath`]).
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(encode_path(input), expected, "encode_path({input:?})");
    }

    #[test]
    fn paths_keep_separators_and_encode_the_rest() {
        check("/project/gh/acme/api", "/project/gh/acme/api");
        check(
            "/project/gh/zürich-labs/api",
            "/project/gh/z%C3%BCrich-labs/api",
        );
        check("/context/a b/x?y#z", "/context/a%20b/x%3Fy%23z");
        check("/v/100%", "/v/100%25");
        check("/v/a+b=c", "/v/a%2Bb%3Dc");
        check("/v/~keep-._", "/v/~keep-._");
        check("", "");
    }

    #[test]
    fn segments_encode_slashes() {
        assert_eq!(encode_segment("ctx/prod"), "ctx%2Fprod");
        assert_eq!(encode_segment("plain"), "plain");
        assert_eq!(encode_segment("日本"), "%E6%97%A5%E6%9C%AC");
    }
}
