//! Pagination: the styles APIs page their listings in, and the one loop that
//! walks them with loop and runaway protection.
//!
//! A style turns a response into a [`Page`] (items plus an optional
//! [`Cursor`]); a cursor turns the current URL into the next one. The loop in
//! [`Pages::next_page`] only sees pages and cursors, so a new style is one
//! more variant here, not a branch in the loop: `Link: <…>; rel="next"`
//! ([`Pagination::LinkHeader`]) yields a `Cursor::Url`, which the loop checks
//! stays on the base URL's origin.

use std::collections::HashSet;
use std::marker::PhantomData;

use reqwest::header::LINK;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::graph::describe;
use url::Url;

use super::retry::Fetched;
use super::{HttpClient, HttpError, RequestStats, endpoint};

/// Characters of a repeated page token quoted in [`HttpError::PageLoop`].
const TOKEN_EXCERPT_CHARS: usize = 40;

/// How a list endpoint pages its results.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pagination {
    /// The body is `{"<items_field>": [...], "<token_field>": "…" | null}`
    /// and the next page is the same request with `query_param=<token>`
    /// (CircleCI API v2: `items`, `next_page_token`, `page-token`).
    ///
    /// Both fields must be present: a renamed field that silently ended the
    /// listing after one page would make a partial list look complete. A
    /// `null` or empty token ends the listing.
    BodyToken {
        items_field: &'static str,
        token_field: &'static str,
        query_param: &'static str,
    },
    /// The body is a JSON array of items; the next page is the URL in the
    /// `Link` header's `rel="next"` entry (RFC 8288; GitHub). No `Link`, or
    /// no `next` in it, ends the listing. The URL may be relative to the
    /// page's, and must stay on the base URL's origin.
    LinkHeader,
}

impl Pagination {
    /// `{items, next_page_token}` pages, next page via `page-token`.
    pub const fn body_token() -> Self {
        Pagination::BodyToken {
            items_field: "items",
            token_field: "next_page_token",
            query_param: "page-token",
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        fetched: &Fetched,
        current: &Url,
    ) -> Result<Page<T>, HttpError> {
        let decode_error = |message: String| HttpError::Decode {
            endpoint: fetched.endpoint.clone(),
            message,
        };
        match self {
            Pagination::LinkHeader => {
                let body: Value = serde_json::from_slice(&fetched.body)
                    .map_err(|e| decode_error(e.to_string()))?;
                let Value::Array(items) = body else {
                    return Err(decode_error(format!(
                        "expected an array of items, got {}",
                        describe(&body)
                    )));
                };
                let items = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        serde_json::from_value(item)
                            .map_err(|e| decode_error(format!("[{i}]: {e}")))
                    })
                    .collect::<Result<Vec<T>, _>>()?;
                let next = match fetched.headers.get(LINK) {
                    None => None,
                    Some(value) => {
                        let text = value.to_str().map_err(|_| {
                            decode_error("the Link header is not visible ASCII".to_owned())
                        })?;
                        match next_link(text) {
                            None => None,
                            Some(target) => {
                                Some(Cursor::Url(current.join(&target).map_err(|e| {
                                    decode_error(format!(
                                        "the Link header's next URL {target:?}: {e}"
                                    ))
                                })?))
                            }
                        }
                    }
                };
                Ok(Page { items, next })
            }
            Pagination::BodyToken {
                items_field,
                token_field,
                query_param,
            } => {
                let body: Value = serde_json::from_slice(&fetched.body)
                    .map_err(|e| decode_error(e.to_string()))?;
                let Value::Object(mut fields) = body else {
                    return Err(decode_error(format!(
                        "expected an object with `{items_field}` and `{token_field}`, got {}",
                        describe(&body)
                    )));
                };
                let items = match fields.remove(*items_field) {
                    Some(Value::Array(items)) => items,
                    Some(other) => {
                        return Err(decode_error(format!(
                            "`{items_field}` is {}, expected an array",
                            describe(&other)
                        )));
                    }
                    None => return Err(decode_error(format!("missing `{items_field}`"))),
                };
                let next = match fields.remove(*token_field) {
                    Some(Value::Null) => None,
                    Some(Value::String(token)) if token.is_empty() => None,
                    Some(Value::String(token)) => Some(Cursor::QueryParam {
                        name: query_param,
                        value: token,
                    }),
                    Some(other) => {
                        return Err(decode_error(format!(
                            "`{token_field}` is {}, expected a string or null",
                            describe(&other)
                        )));
                    }
                    None => return Err(decode_error(format!("missing `{token_field}`"))),
                };
                let items = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        serde_json::from_value(item)
                            .map_err(|e| decode_error(format!("{items_field}[{i}]: {e}")))
                    })
                    .collect::<Result<Vec<T>, _>>()?;
                Ok(Page { items, next })
            }
        }
    }
}

/// One decoded page.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Where the next page is; `None` on the last page.
    pub(crate) next: Option<Cursor>,
}

/// The `rel="next"` target of a `Link` header value (RFC 8288), as written
/// (possibly relative). `rel` may hold several space-separated relation
/// types, in any case; parameters other than `rel` are ignored.
///
/// `<https://api.github.com/orgs/x/repos?page=2>; rel="next", <…>; rel="last"`
/// → `https://api.github.com/orgs/x/repos?page=2`.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        // Parameters run to the next `<` that starts another link value.
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim_end()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_owned());
        }
        rest = &after[params_end..];
    }
}

/// Where the next page is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor {
    /// The current request with one query parameter set (or replaced).
    QueryParam { name: &'static str, value: String },
    /// An absolute URL the server named.
    Url(Url),
}

impl Cursor {
    /// What identifies this cursor for loop detection.
    fn key(&self) -> &str {
        match self {
            Cursor::QueryParam { value, .. } => value,
            Cursor::Url(url) => url.as_str(),
        }
    }

    /// The URL of the page this cursor points at, from the current page's.
    fn next_url(&self, current: &Url) -> Url {
        match self {
            Cursor::Url(url) => url.clone(),
            Cursor::QueryParam { name, value } => {
                let kept: Vec<(String, String)> = current
                    .query_pairs()
                    .filter(|(k, _)| k != name)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let mut next = current.clone();
                next.set_query(None);
                next.query_pairs_mut()
                    .extend_pairs(kept)
                    .append_pair(name, value);
                next
            }
        }
    }
}

/// A listing fetched one page at a time. Errors are sticky: after one,
/// `next_page` does not report the listing as finished (it retries the page
/// that failed), so a caller cannot mistake a failure for the end.
#[derive(Debug)]
pub struct Pages<'a, T> {
    client: &'a HttpClient,
    stats: &'a RequestStats,
    pagination: Pagination,
    /// The first page's endpoint, for errors about the listing as a whole.
    endpoint: String,
    next: Option<Url>,
    fetched: usize,
    seen: HashSet<String>,
    _items: PhantomData<fn() -> T>,
}

impl<'a, T: DeserializeOwned> Pages<'a, T> {
    pub(crate) fn new(
        client: &'a HttpClient,
        pagination: Pagination,
        first: Url,
        stats: &'a RequestStats,
    ) -> Self {
        // A `Link` back to the first page is a loop too (token cursors
        // never name the first page).
        let mut seen = HashSet::new();
        if matches!(pagination, Pagination::LinkHeader) {
            seen.insert(first.as_str().to_owned());
        }
        Self {
            client,
            stats,
            pagination,
            endpoint: endpoint(&first),
            next: Some(first),
            fetched: 0,
            seen,
            _items: PhantomData,
        }
    }

    /// The next page's items, or `None` once the last page has been returned.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, HttpError> {
        let Some(url) = &self.next else {
            return Ok(None);
        };
        let fetched = self.client.fetch(url, self.stats).await?;
        let page = self.pagination.decode::<T>(&fetched, url)?;
        let next = match &page.next {
            None => None,
            Some(cursor) => {
                if let Cursor::Url(next) = cursor
                    && !self.client.same_origin(next)
                {
                    return Err(HttpError::ForeignPageLink {
                        endpoint: self.endpoint.clone(),
                        origin: next.origin().ascii_serialization(),
                    });
                }
                if self.seen.contains(cursor.key()) {
                    return Err(HttpError::PageLoop {
                        endpoint: self.endpoint.clone(),
                        token_excerpt: cursor.key().chars().take(TOKEN_EXCERPT_CHARS).collect(),
                    });
                }
                let max_pages = self.client.inner.config.max_pages;
                if self.fetched + 1 >= max_pages {
                    return Err(HttpError::TooManyPages {
                        endpoint: self.endpoint.clone(),
                        max_pages,
                    });
                }
                self.seen.insert(cursor.key().to_owned());
                Some(cursor.next_url(url))
            }
        };
        self.fetched += 1;
        self.next = next;
        tracing::debug!(
            endpoint = %self.endpoint,
            page = self.fetched,
            items = page.items.len(),
            last = self.next.is_none(),
            "fetched a page"
        );
        Ok(Some(page.items))
    }

    /// Pages fetched so far.
    pub fn pages_fetched(&self) -> usize {
        self.fetched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Result<Page<u32>, String> {
        let fetched = Fetched {
            endpoint: "GET /things".to_owned(),
            body: body.as_bytes().into(),
            headers: reqwest::header::HeaderMap::new(),
        };
        let current = Url::parse("http://h/things").expect("url");
        Pagination::body_token()
            .decode(&fetched, &current)
            .map_err(|e| e.to_string())
    }

    fn check(body: &str, expected: Result<(Vec<u32>, Option<&str>), &str>) {
        let got = decode(body).map(|p| {
            let token = p.next.map(|c| c.key().to_owned());
            (p.items, token)
        });
        match expected {
            Ok((items, token)) => {
                assert_eq!(got, Ok((items, token.map(str::to_owned))), "body {body}")
            }
            Err(fragment) => {
                let message = got.expect_err(body);
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
                assert!(message.contains("GET /things"), "{message:?}");
            }
        }
    }

    #[test]
    fn body_token_pages() {
        check(
            r#"{"items":[1,2],"next_page_token":"a+b"}"#,
            Ok((vec![1, 2], Some("a+b"))),
        );
        check(r#"{"items":[],"next_page_token":null}"#, Ok((vec![], None)));
        check(
            r#"{"items":[3],"next_page_token":"","extra":1}"#,
            Ok((vec![3], None)),
        );
        check(r#"{"next_page_token":null}"#, Err("missing `items`"));
        check(r#"{"items":[1]}"#, Err("missing `next_page_token`"));
        check(
            r#"{"items":{},"next_page_token":null}"#,
            Err("`items` is an object"),
        );
        check(
            r#"{"items":[1],"next_page_token":5}"#,
            Err("`next_page_token` is a number"),
        );
        check(
            r#"{"items":[1,"x"],"next_page_token":null}"#,
            Err("items[1]: invalid type"),
        );
        check(r#"[1,2]"#, Err("got an array"));
        check(r#"{"items":["#, Err("EOF"));
    }

    #[test]
    fn query_cursor_replaces_its_parameter_and_keeps_the_rest() {
        let current = Url::parse("http://h/api/x?org-slug=gh%2Facme&page-token=old").expect("url");
        let cursor = Cursor::QueryParam {
            name: "page-token",
            value: "a+b/c=".to_owned(),
        };
        assert_eq!(
            cursor.next_url(&current).as_str(),
            "http://h/api/x?org-slug=gh%2Facme&page-token=a%2Bb%2Fc%3D"
        );
    }
}
