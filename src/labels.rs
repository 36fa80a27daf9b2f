//! Every fixed label set the service counts by: methods, routes, status codes and limit reasons, plus the
//! two macros that define such a set once.
//!
//! Each set is one table. `labels!` turns `Variant => "label"` rows into the enum, its `ALL` list, `label()`
//! and `from_label()`; `reasons!` turns rejection rows (status, metric reason, message, optional limit) into
//! an error enum with `ALL`, `status()`, `reason()`, `limit_reason()` and `Display`. Nothing a client sends
//! becomes a label: a value outside a table maps to its catch-all variant.
//!
//! Metrics imports these sets; the application, the parser and the chunked decoder use them. None of them is
//! imported back, so there is no cycle.

/// Defines a label enum from `Variant => "label" [, "tag"]` rows: the enum, `ALL` in row order, `label()`,
/// `from_label()` and `tag()` (the optional second label of a row).
macro_rules! labels {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal $(, $tag:literal)? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in table order (which is also the discriminant order).
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            pub const fn label(self) -> &'static str {
                match self {
                    $( $name::$variant => $label ),+
                }
            }

            /// The value whose label is exactly `label`.
            pub fn from_label(label: &str) -> Option<$name> {
                match label {
                    $( $label => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The row's second label, if it has one.
            pub const fn tag(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => labels!(@tag $($tag)?) ),+
                }
            }
        }
    };
    (@tag) => { None };
    (@tag $tag:literal) => { Some($tag) };
}

/// Defines a rejection enum from rows
/// `Variant => status, "metric_reason", "message" [, limit LimitVariant];`:
/// the enum, `ALL`, `status()`, `reason()` (the `reason` label of `sremini_parse_errors_total`),
/// `limit_reason()` (the `reason` of `sremini_limit_rejections_total`, for rows that are a configured limit),
/// `Display` (the message, also the response body) and `std::error::Error`.
macro_rules! reasons {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $status:literal, $reason:literal, $message:literal
               $(, limit $limit:ident)? ; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in table order, for pre-initialising metrics.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The response status for this rejection.
            pub const fn status(self) -> u16 {
                match self {
                    $( $name::$variant => $status ),+
                }
            }

            /// A short snake_case label, for the `reason` metric label and logs.
            pub const fn reason(self) -> &'static str {
                match self {
                    $( $name::$variant => $reason ),+
                }
            }

            /// The configured limit this rejection enforces, if it is one.
            pub const fn limit_reason(self) -> Option<$crate::labels::LimitReason> {
                match self {
                    $( $name::$variant => $crate::labels::reasons!(@limit $($limit)?) ),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(match self {
                    $( $name::$variant => $message ),+
                })
            }
        }

        impl ::std::error::Error for $name {}
    };
    (@limit) => { None };
    (@limit $limit:ident) => { Some($crate::labels::LimitReason::$limit) };
}

pub(crate) use reasons;

labels! {
    /// The `method` label. Methods are case-sensitive (RFC 9110 §9.1): `get` is `OTHER`.
    pub enum Method {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Put => "PUT",
        Delete => "DELETE",
        Patch => "PATCH",
        Options => "OPTIONS",
        Connect => "CONNECT",
        Trace => "TRACE",
        /// Any other token: bounded so a client cannot mint metric series.
        Other => "OTHER",
    }
}

impl Method {
    /// The method a request-line token names; any token outside the table is `Other`.
    pub fn from_token(token: &str) -> Method {
        Method::from_label(token).unwrap_or(Method::Other)
    }
}

labels! {
    /// The `route` label: the route template, which is the exact path it answers. The drills are the rows with a
    /// second label, their `action` in the audit trail and `sremini_audit_events_total`.
    pub enum Route {
        Healthz => "/healthz",
        Readyz => "/readyz",
        Metrics => "/metrics",
        Work => "/work",
        FailReady => "/fail/ready", "fail_ready",
        RecoverReady => "/recover/ready", "recover_ready",
        FailWork => "/fail/work", "fail_work",
        RecoverWork => "/recover/work", "recover_work",
        Panic => "/panic", "panic",
        /// Any other path, and the drill routes when drills are off.
        Unmatched => "unmatched",
    }
}

impl Route {
    /// The drill action of a drill route: state-changing, audited, behind the drill token.
    pub const fn action(self) -> Option<&'static str> {
        self.tag()
    }

    /// The `Allow` value; HEAD only where GET changes nothing.
    pub fn allow(self) -> &'static str {
        if self.action().is_some() { "GET, POST" } else { "GET, HEAD" }
    }

    /// Whether the route serves this method (else 405).
    pub fn takes(self, method: Method) -> bool {
        self.allow().split(", ").any(|m| m == method.label())
    }
}

labels! {
    /// Why a connection or request was refused by a configured limit: the `reason` of
    /// `sremini_limit_rejections_total`.
    pub enum LimitReason {
        ConnectionCap => "connection_cap",
        RequestLineTooLong => "request_line_too_long",
        HeaderTooLarge => "header_too_large",
        TooManyFields => "too_many_fields",
        BodyTooLarge => "body_too_large",
        HeaderTimeout => "header_timeout",
        BodyTimeout => "body_timeout",
        WriteTimeout => "write_timeout",
        /// `/work` CPU time admitted and not yet burned would pass `WORK_CPU_BACKLOG_MS`.
        WorkCpuBacklog => "work_cpu_backlog",
    }
}

/// Every final status this server sends, with its reason phrase (RFC 9110 §15): the `code` label's set.
pub const STATUSES: [(u16, &str); 15] = [
    (200, "OK"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (408, "Request Timeout"),
    (409, "Conflict"),
    (413, "Content Too Large"),
    (414, "URI Too Long"),
    (417, "Expectation Failed"),
    (431, "Request Header Fields Too Large"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (503, "Service Unavailable"),
    (505, "HTTP Version Not Supported"),
];

/// The position of `status` in [`STATUSES`], if the server sends it. Indexes the request counter.
pub fn code_index(status: u16) -> Option<usize> {
    STATUSES.iter().position(|&(c, _)| c == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
            assert_eq!(Method::from_label(m.label()), Some(*m));
        }
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Route::from_label(r.label()), Some(*r));
        }
        for (i, r) in LimitReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        assert!(STATUSES.windows(2).all(|w| w[0].0 < w[1].0), "codes sorted and unique");
        assert_eq!(code_index(431), Some(10));
        assert_eq!(code_index(418), None);
    }

    /// The first code span of the docs/metrics.md "Label values" bullet that starts with `` `name` ``, with its
    /// whitespace collapsed, and the whole bullet.
    fn documented(name: &str) -> (String, String) {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
        let start = doc.find(&format!("\n- {name}")).unwrap_or_else(|| panic!("docs/metrics.md has no bullet {name}"));
        let rest = &doc[start + 3..];
        let bullet = &rest[..rest.find("\n- ").unwrap_or(rest.len())];
        let bullet = bullet.split_whitespace().collect::<Vec<_>>().join(" ");
        let after = &bullet[bullet.find(": ").unwrap() + 2..];
        let span = after.split('`').nth(1).unwrap_or_default().to_string();
        (span, bullet)
    }

    fn joined<'a>(labels: impl IntoIterator<Item = &'a str>) -> String {
        labels.into_iter().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn docs_list_the_label_values_these_tables_define() {
        let (span, bullet) = documented("`method`");
        assert_eq!(span, joined(Method::ALL.iter().filter(|m| **m != Method::Other).map(|m| m.label())));
        assert!(bullet.contains("`OTHER`"), "{bullet}");
        let (_, bullet) = documented("`route`");
        let span = bullet.split("template `").nth(1).and_then(|s| s.split('`').next()).unwrap_or_default();
        assert_eq!(span, joined(Route::ALL.iter().filter(|r| **r != Route::Unmatched).map(|r| r.label())));
        assert!(bullet.contains("`unmatched`"), "{bullet}");
        let (span, _) = documented("`code`");
        assert_eq!(span, STATUSES.map(|(c, _)| c.to_string()).join(" "));
        let (span, _) = documented("`reason` of `sremini_limit_rejections_total`");
        assert_eq!(span, joined(LimitReason::ALL.iter().map(|r| r.label())));
    }

    #[test]
    fn methods_are_case_sensitive_and_bounded() {
        assert_eq!(Method::from_token("GET"), Method::Get);
        assert_eq!(Method::from_token("get"), Method::Other);
        assert_eq!(Method::from_token("FOO"), Method::Other);
        assert_eq!(Method::from_token("OTHER"), Method::Other);
    }
}
