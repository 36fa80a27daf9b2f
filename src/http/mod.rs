//! HTTP/1.1 wire format: the pure request parser and chunked decoder, and response encoding.
pub mod chunked;
pub mod parser;
pub mod response;

/// The `reason` set of `sremini_parse_errors_total`: one per parser and chunked-decoder rule. The 414s and 431s
/// (head or trailers) count here and as limit rejections; a body over the cap is only a limit
/// (`body_too_large`), so its reason is left out.
pub fn parse_error_reasons() -> Vec<&'static str> {
    let head = parser::ParseError::ALL.iter().map(|e| e.reason());
    let body = chunked::ChunkedError::ALL.iter().filter(|e| !counts_only_as_limit(**e)).map(|e| e.reason());
    head.chain(body).collect()
}

/// A chunked-body rejection that is counted as a limit rejection and not as a parse error.
pub fn counts_only_as_limit(e: chunked::ChunkedError) -> bool {
    e == chunked::ChunkedError::BodyTooLarge
}

#[cfg(test)]
mod tests {
    use super::chunked::ChunkedError;
    use super::parser::ParseError;
    use crate::labels::{LimitReason, code_index};

    #[test]
    fn every_rejection_status_has_a_counter_slot() {
        for e in ParseError::ALL {
            assert!(code_index(e.status()).is_some(), "{e:?}");
        }
        for e in ChunkedError::ALL {
            assert!(code_index(e.status()).is_some(), "{e:?}");
        }
    }

    #[test]
    fn limits_are_data_not_substrings() {
        assert_eq!(ParseError::RequestLineTooLong.limit_reason(), Some(LimitReason::RequestLineTooLong));
        assert_eq!(ParseError::HeaderSectionTooLarge.limit_reason(), Some(LimitReason::HeaderTooLarge));
        assert_eq!(ParseError::TooManyFields.limit_reason(), Some(LimitReason::TooManyFields));
        assert_eq!(ChunkedError::BodyTooLarge.limit_reason(), Some(LimitReason::BodyTooLarge));
        for e in ParseError::ALL {
            assert_eq!(e.limit_reason().is_some(), matches!(e.status(), 414 | 431), "{e:?}");
        }
        for e in ChunkedError::ALL {
            assert_eq!(e.limit_reason().is_some(), matches!(e.status(), 413 | 431), "{e:?}");
        }
    }

    #[test]
    fn parse_reasons_are_unique_and_exclude_the_body_cap() {
        let reasons = super::parse_error_reasons();
        let mut unique = reasons.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), reasons.len());
        assert_eq!(reasons.len(), ParseError::ALL.len() + ChunkedError::ALL.len() - 1);
        assert!(!reasons.contains(&"body_too_large"));
    }
}
