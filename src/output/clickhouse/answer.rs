//! What ClickHouse's answer to an `INSERT` means for the batch it carried.
//!
//! ClickHouse says what went wrong with an exception code, `Code: N` at the start of the body
//! (and, on servers newer than 18.16, in an `X-ClickHouse-Exception-Code` header). The HTTP
//! status alone is not enough: 18.16 answers a malformed JSON row with `500` (code 27), the
//! same status as a timeout, and an unknown column with `500` (code 117). So the code decides,
//! and the status only when there is no code or the code is not one listed here.
//!
//! The lists, with the reason for each code (names from ClickHouse's `ErrorCodes.cpp`; the
//! answers quoted in the tests are 18.16's, captured here):
//!
//! - A row ClickHouse cannot parse or store ([`Answer::BadRow`]: the batch is bisected and the
//!   row refused for good): 6 `CANNOT_PARSE_TEXT`, 25 `CANNOT_PARSE_ESCAPE_SEQUENCE` (a lone
//!   surrogate `\ud800`), 26 `CANNOT_PARSE_QUOTED_STRING` (`null`, an array or an object for a
//!   `String`), 27 `CANNOT_PARSE_INPUT_ASSERTION_FAILED` (malformed JSON, a string for a
//!   number, a date that is not one), 32 `ATTEMPT_TO_READ_AFTER_EOF` and 33
//!   `CANNOT_READ_ALL_DATA` (a row cut short), 38 `CANNOT_PARSE_DATE`, 41
//!   `CANNOT_PARSE_DATETIME`, 53 `TYPE_MISMATCH`, 69 `ARGUMENT_OUT_OF_BOUND` (too many digits
//!   for a `Decimal`), 70 `CANNOT_CONVERT_TYPE`, 72 `CANNOT_PARSE_NUMBER` (`-1` for a
//!   `UInt64`), 117 `INCORRECT_DATA` (a field the table does not have), 128
//!   `TOO_LARGE_ARRAY_SIZE`, 130 `CANNOT_READ_ARRAY_FROM_TEXT`, 131 `TOO_LARGE_STRING_SIZE` (a
//!   value longer than a `FixedString(N)`), 349 `CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN`, 376
//!   `CANNOT_PARSE_UUID`, 407 `DECIMAL_OVERFLOW`, 441 `CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING`,
//!   467 `CANNOT_PARSE_BOOL`, 469 `VIOLATED_CONSTRAINT` (a `CHECK` on a row); and 49
//!   `LOGICAL_ERROR` only when it says `Unknown element` (18.16's answer to a value that is not
//!   one of an `Enum`'s). Not in the list although suggested: 62 `SYNTAX_ERROR` is about the
//!   query, which rlog builds from checked names, not about a row; 432 `UNKNOWN_CODEC` is about
//!   a table's definition.
//! - Worth trying the same bytes again later ([`Answer::Transient`]): 159
//!   `TIMEOUT_EXCEEDED`, 202 `TOO_MANY_SIMULTANEOUS_QUERIES`, 209 `SOCKET_TIMEOUT`, 210
//!   `NETWORK_ERROR`, 241 `MEMORY_LIMIT_EXCEEDED`, 252 `TOO_MANY_PARTS` (merges catch up), and
//!   what a server or a cluster says while it is short of something that comes back: 173
//!   `CANNOT_ALLOCATE_MEMORY`, 201 `QUOTA_EXPIRED`, 203 `NO_FREE_CONNECTION`, 225
//!   `NO_ZOOKEEPER`, 236 `ABORTED`, 242 `TABLE_IS_READ_ONLY` (a replica without ZooKeeper), 243
//!   `NOT_ENOUGH_SPACE`, 244 `UNEXPECTED_ZOOKEEPER_ERROR`, 279 `ALL_CONNECTION_TRIES_FAILED`,
//!   285 `TOO_FEW_LIVE_REPLICAS`, 286 `UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE`, 319
//!   `UNKNOWN_STATUS_OF_INSERT`, 364 `RECEIVED_ERROR_TOO_MANY_REQUESTS`, 394
//!   `QUERY_WAS_CANCELLED` (a server shutting down), 999 `KEEPER_EXCEPTION`. Likewise a 5xx
//!   without a code, or with a code not listed.
//! - The server refuses this client or this destination, whatever the rows
//!   ([`Answer::Refused`]: retried slowly, with the pending error saying why, the records
//!   kept): 192 `UNKNOWN_USER`, 193 `WRONG_PASSWORD`, 194 `REQUIRED_PASSWORD`, 195
//!   `IP_ADDRESS_NOT_ALLOWED`, 516 `AUTHENTICATION_FAILED`, 497 `ACCESS_DENIED`, 291
//!   `DATABASE_ACCESS_DENIED`, 164 `READONLY`, 60 `UNKNOWN_TABLE`, 81 `UNKNOWN_DATABASE` (a
//!   table not created yet, or dropped: an operator fixes it and the rows go in).
//! - Any other 4xx (or 501) with a code not listed: refused by the http output's rules, a
//!   request ClickHouse will refuse again ([`Answer::BadRow`] without a row).

/// What an answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The rows are stored.
    Stored,
    /// Try the same bytes again later.
    Transient(String),
    /// A row of the batch cannot be stored: isolate it by bisection and refuse it. `row`:
    /// ClickHouse's `(at row N)`, 1-based within the body, when it says it.
    BadRow { why: String, row: Option<usize> },
    /// This client or destination is refused whatever the rows: retry slowly and report.
    Refused(String),
}

/// Codes of a row that cannot be parsed or stored.
const ROW_CODES: &[u32] = &[
    6, 25, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 128, 130, 131, 349, 376, 407, 441, 467, 469,
];

/// Codes worth retrying as they are.
const TRANSIENT_CODES: &[u32] = &[
    159, 173, 201, 202, 203, 209, 210, 225, 236, 241, 242, 243, 244, 252, 279, 285, 286, 319, 364,
    394, 999,
];

/// Codes of a client or destination refused whatever the rows.
const REFUSED_CODES: &[u32] = &[60, 81, 164, 192, 193, 194, 195, 291, 497, 516];

/// ClickHouse's exception code and text in an answer body: `Code: N, e.displayText() =
/// DB::Exception: TEXT, e.what() = DB::Exception` (18.16) or `Code: N. DB::Exception: TEXT.
/// (NAME) (version V)` (newer servers).
pub fn exception(body: &[u8]) -> Option<(u32, String)> {
    let text = String::from_utf8_lossy(body);
    let at = text.find("Code: ")?;
    let rest = &text[at + 6..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let code = rest[..digits].parse().ok()?;
    let mut msg = rest[digits..].trim_start_matches([',', '.', ' ']);
    for prefix in ["e.displayText() = ", "DB::Exception: "] {
        msg = msg.strip_prefix(prefix).unwrap_or(msg);
    }
    if let Some(end) = msg.rfind(", e.what() = ") {
        msg = &msg[..end];
    }
    Some((code, msg.trim().to_string()))
}

/// `text` on one line, trimmed, at most 300 characters: a pending error, not a dump of the
/// body (ClickHouse quotes the input after a parse error).
fn one_line(text: &str) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

/// The row ClickHouse names in a parse error: `(at row N)`.
fn row_of(text: &str) -> Option<usize> {
    let at = text.rfind("(at row ")?;
    let rest = &text[at + 8..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok().filter(|&n| n > 0)
}

/// What an answer with HTTP `status`, the `X-ClickHouse-Exception-Code` header's value if
/// any, and `body` means.
pub fn classify(status: u16, header_code: Option<&str>, body: &[u8]) -> Answer {
    let header_code = header_code.and_then(|h| h.trim().parse::<u32>().ok());
    if (200..300).contains(&status) && header_code.is_none() {
        return Answer::Stored;
    }
    let parsed = exception(body);
    let code = header_code.or(parsed.as_ref().map(|(c, _)| *c));
    let full = parsed
        .map(|(_, t)| t)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let row = row_of(&full);
    let text = one_line(&full);
    let why = match code {
        Some(c) => format!("ClickHouse error {c} (HTTP {status}): {text}"),
        None if text.is_empty() => format!("ClickHouse answered HTTP {status}"),
        None => format!("ClickHouse answered HTTP {status}: {text}"),
    };
    match code {
        Some(c) if ROW_CODES.contains(&c) || (c == 49 && text.contains("Unknown element")) => {
            Answer::BadRow { row, why }
        }
        Some(c) if TRANSIENT_CODES.contains(&c) => Answer::Transient(why),
        Some(c) if REFUSED_CODES.contains(&c) => Answer::Refused(why),
        // Not listed: the status says it, as for any HTTP peer. Kept in step with the http
        // output's rules: 408, 425, 429 and 5xx but 501 are retried; other 4xx are refusals.
        _ if matches!(status, 408 | 425 | 429) || (status >= 500 && status != 501) => {
            Answer::Transient(why)
        }
        _ if (400..600).contains(&status) => Answer::BadRow { why, row: None },
        // 1xx or 3xx: nothing was stored that this client can know of.
        _ => Answer::Transient(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Answers of clickhouse-server 18.16.1 (Debian), captured here with curl against a table
    // `logs.t (ts UInt64, msg String, n UInt32)` and others as named; status first.

    const BAD_JSON: &str = "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected \" before: n:2}\\n{\"ts\":3,\"msg\":\"c\",\"n\":3}\\n: (at row 2)\n, e.what() = DB::Exception\n";
    const UNKNOWN_FIELD: &str = "Code: 117, e.displayText() = DB::Exception: Unknown field found while parsing JSONEachRow format: msgx: (at row 2)\n, e.what() = DB::Exception\n";
    const NEGATIVE_UINT: &str = "Code: 72, e.displayText() = DB::Exception: Unsigned type must not contain '-' symbol: (while read the value of key ts): (at row 1)\n, e.what() = DB::Exception\n";
    const NULL_STRING: &str = "Code: 26, e.displayText() = DB::Exception: Cannot parse JSON string: expected opening quote: (while read the value of key s): (at row 1)\n, e.what() = DB::Exception\n";
    const BAD_DATETIME: &str = "Code: 41, e.displayText() = DB::Exception: Cannot parse datetime: (while read the value of key dt): (at row 1)\n, e.what() = DB::Exception\n";
    const BAD_ENUM: &str = "Code: 49, e.displayText() = DB::Exception: Unknown element 'zz' for type Enum8('a' = 1, 'b' = 2): (while read the value of key e), e.what() = DB::Exception\n";
    const BAD_UUID: &str = "Code: 376, e.displayText() = DB::Exception: Cannot parse uuid not-a-uuid\"}\n: (while read the value of key u): (at row 1)\n, e.what() = DB::Exception\n";
    const DECIMAL_DIGITS: &str = "Code: 69, e.displayText() = DB::Exception: Too many digits in decimal value: (while read the value of key dec), e.what() = DB::Exception\n";
    const FIXED_STRING: &str = "Code: 131, e.displayText() = DB::Exception: Too large value for FixedString(2): (while read the value of key fs): (at row 1)\n, e.what() = DB::Exception\n";
    const SURROGATE: &str = "Code: 25, e.displayText() = DB::Exception: Cannot parse escape sequence: missing second part of surrogate pair: (while read the value of key s), e.what() = DB::Exception\n";
    const WRONG_PASSWORD: &str = "Code: 193, e.displayText() = DB::Exception: Wrong password for user writer, e.what() = DB::Exception\n";
    const UNKNOWN_USER: &str = "Code: 192, e.displayText() = DB::Exception: Unknown user nobody, e.what() = DB::Exception\n";
    const NO_TABLE: &str = "Code: 60, e.displayText() = DB::Exception: Table logs.nope doesn't exist., e.what() = DB::Exception\n";
    const NO_DATABASE: &str = "Code: 81, e.displayText() = DB::Exception: Database nodb doesn't exist, e.what() = DB::Exception\n";
    const READONLY: &str = "Code: 164, e.displayText() = DB::Exception: Cannot insert into table in readonly mode, e.what() = DB::Exception\n";
    const INFLATE: &str = "Code: 354, e.displayText() = DB::Exception: inflate failed: data error, e.what() = DB::Exception\n";
    const SYNTAX: &str = "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 20 (line 1, col 20): FORMATT JSONEachRow\n{\"ts\":1}\n. Expected one of: VALUES, OpeningRoundBracket, token, WITH, FORMAT, SELECT, e.what() = DB::Exception\n";
    // A newer server's wording (22.x and later), for the format only.
    const NEWER: &str = "Code: 27. DB::Exception: Cannot parse input: expected '\"' before: 'oops}': (at row 3)\n: While executing ParallelParsingBlockInputFormat. (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 23.8.1.1)\n";

    fn bad_row(a: Answer) -> Option<usize> {
        match a {
            Answer::BadRow { row, .. } => row,
            other => panic!("expected a bad row, got {other:?}"),
        }
    }

    #[test]
    fn stored_on_2xx_without_an_exception_header() {
        assert_eq!(classify(200, None, b""), Answer::Stored);
        assert!(matches!(
            classify(200, Some("241"), b"Code: 241"),
            Answer::Transient(_)
        ));
    }

    #[test]
    fn parse_errors_are_bad_rows_with_the_row_when_clickhouse_names_it() {
        // 18.16 answers most of them with 500: the code decides, not the status.
        assert_eq!(bad_row(classify(500, None, BAD_JSON.as_bytes())), Some(2));
        assert_eq!(
            bad_row(classify(500, None, UNKNOWN_FIELD.as_bytes())),
            Some(2)
        );
        assert_eq!(
            bad_row(classify(400, None, NEGATIVE_UINT.as_bytes())),
            Some(1)
        );
        assert_eq!(
            bad_row(classify(400, None, NULL_STRING.as_bytes())),
            Some(1)
        );
        assert_eq!(
            bad_row(classify(400, None, BAD_DATETIME.as_bytes())),
            Some(1)
        );
        assert_eq!(bad_row(classify(500, None, BAD_UUID.as_bytes())), Some(1));
        assert_eq!(
            bad_row(classify(500, None, FIXED_STRING.as_bytes())),
            Some(1)
        );
        assert_eq!(bad_row(classify(500, None, BAD_ENUM.as_bytes())), None);
        assert_eq!(
            bad_row(classify(500, None, DECIMAL_DIGITS.as_bytes())),
            None
        );
        assert_eq!(bad_row(classify(400, None, SURROGATE.as_bytes())), None);
        assert_eq!(
            bad_row(classify(500, Some("27"), NEWER.as_bytes())),
            Some(3)
        );
    }

    #[test]
    fn a_logical_error_is_a_bad_row_only_for_an_unknown_enum_element() {
        assert!(matches!(
            classify(500, None, b"Code: 49, e.displayText() = DB::Exception: Pipeline stuck, e.what() = DB::Exception"),
            Answer::Transient(_)
        ));
    }

    #[test]
    fn credentials_and_destination_are_refused_whatever_the_status() {
        for (status, body) in [
            (401, WRONG_PASSWORD),
            (401, UNKNOWN_USER),
            (404, NO_TABLE),
            (404, NO_DATABASE),
            (500, READONLY),
        ] {
            assert!(
                matches!(classify(status, None, body.as_bytes()), Answer::Refused(_)),
                "{body}"
            );
        }
        match classify(401, None, WRONG_PASSWORD.as_bytes()) {
            Answer::Refused(why) => assert_eq!(
                why,
                "ClickHouse error 193 (HTTP 401): Wrong password for user writer"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(200, Some("516"), b""),
            Answer::Refused(_)
        ));
    }

    #[test]
    fn overload_and_timeouts_are_transient_whatever_the_status() {
        for code in [159, 202, 209, 210, 241, 252] {
            let body = format!(
                "Code: {code}, e.displayText() = DB::Exception: x, e.what() = DB::Exception\n"
            );
            assert!(
                matches!(classify(400, None, body.as_bytes()), Answer::Transient(_)),
                "{code}"
            );
        }
    }

    #[test]
    fn without_a_listed_code_the_status_decides() {
        assert!(matches!(
            classify(502, None, b"bad gateway"),
            Answer::Transient(_)
        ));
        assert!(matches!(classify(503, None, b""), Answer::Transient(_)));
        assert!(matches!(classify(429, None, b""), Answer::Transient(_)));
        // 354: our own gzip would be broken; retried, not dead-lettered row by row.
        assert!(matches!(
            classify(500, None, INFLATE.as_bytes()),
            Answer::Transient(_)
        ));
        assert_eq!(bad_row(classify(400, None, SYNTAX.as_bytes())), None);
        assert_eq!(bad_row(classify(413, None, b"")), None);
    }

    #[test]
    fn the_message_is_clickhouse_s_text_on_one_line() {
        let (code, text) = exception(BAD_JSON.as_bytes()).unwrap();
        assert_eq!(code, 27);
        assert!(
            text.starts_with("Cannot parse input: expected \" before: n:2}"),
            "{text}"
        );
        assert!(text.ends_with("(at row 2)"), "{text}");
        match classify(500, None, BAD_JSON.as_bytes()) {
            Answer::BadRow { why, .. } => assert!(!why.contains('\n'), "{why}"),
            other => panic!("{other:?}"),
        }
        let (code, text) = exception(NEWER.as_bytes()).unwrap();
        assert_eq!(code, 27);
        assert!(text.starts_with("Cannot parse input"), "{text}");
        let long = format!(
            "Code: 27, e.displayText() = DB::Exception: {}: (at row 9)\n, e.what() = DB::Exception",
            "x".repeat(1000)
        );
        match classify(500, None, long.as_bytes()) {
            Answer::BadRow { why, row } => {
                assert!(why.len() < 400, "{why}");
                assert_eq!(row, Some(9), "the row is read before the text is cut");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(exception(b"no code here"), None);
    }
}
