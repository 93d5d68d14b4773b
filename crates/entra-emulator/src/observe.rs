//! What tests observe and steer: the request log, counters and fault injection.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The most requests the log keeps; older ones are dropped first.
const LOG_CAPACITY: usize = 10_000;
/// The most text the log keeps, summed over its records; older ones are dropped first, so a
/// flood of large requests cannot grow it past this.
const LOG_BYTE_BUDGET: usize = 32 * 1024 * 1024;

/// Form fields whose values are secrets: the log shows that they were sent, never what.
const SECRET_FIELDS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "assertion",
    "refresh_token",
    "password",
    "code",
];

/// Headers whose values are secrets.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie"];

/// One request as the emulator saw it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RequestRecord {
    /// Seconds since the Unix epoch, with fractions.
    pub time: f64,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Request headers, lower-case names; `authorization` and `cookie` show only
    /// `[redacted sha256:xxxxxxxx]`, the first four bytes of the SHA-256 of the value.
    pub headers: BTreeMap<String, String>,
    /// Form fields of a token request, secret values replaced by `[redacted]`.
    pub form: BTreeMap<String, String>,
    /// How the client authenticated, such as `client_secret`, `certificate PS256 x5t#S256`,
    /// `certificate RS256 x5t x5c` or `federated`.
    pub client_auth: Option<String>,
    /// The response status.
    pub status: u16,
    /// The AADSTS code of an error response.
    pub error_code: Option<u32>,
    /// The fault injected into this request, if any.
    pub fault: Option<String>,
}

impl RequestRecord {
    pub(crate) fn redact_form(fields: &[(String, String)]) -> BTreeMap<String, String> {
        fields
            .iter()
            .map(|(name, value)| {
                let shown = if SECRET_FIELDS.contains(&name.as_str()) {
                    "[redacted]".to_owned()
                } else {
                    value.clone()
                };
                (name.clone(), shown)
            })
            .collect()
    }

    pub(crate) fn redact_headers(headers: &axum::http::HeaderMap) -> BTreeMap<String, String> {
        headers
            .iter()
            .map(|(name, value)| {
                let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                    redacted_fingerprint(value.as_bytes())
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_owned(), shown)
            })
            .collect()
    }
}

/// `[redacted sha256:0123abcd]`: enough to tell which credential was sent (compare with the
/// SHA-256 of `Bearer <token>`), far too little to recover it.
fn redacted_fingerprint(value: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(value);
    let prefix: String = digest
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("[redacted sha256:{prefix}]")
}

/// Totals since start (or since the last reset).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Every request.
    pub requests: u64,
    /// Requests to a token endpoint.
    pub token_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Error responses from the token endpoint.
    pub token_errors: u64,
    /// Requests that met an injected fault.
    pub faults_injected: u64,
    /// Instance discovery requests.
    pub instance_discovery_requests: u64,
    /// OpenID configuration requests.
    pub openid_configuration_requests: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// The most connections open at once (since start or the last reset).
    pub peak_open_connections: u64,
}

#[derive(Default)]
pub(crate) struct AtomicCounters {
    requests: AtomicU64,
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    token_errors: AtomicU64,
    faults_injected: AtomicU64,
    instance_discovery_requests: AtomicU64,
    openid_configuration_requests: AtomicU64,
    open_connections: AtomicU64,
    peak_open_connections: AtomicU64,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Requests,
    TokenRequests,
    TokensIssued,
    TokenErrors,
    FaultsInjected,
    InstanceDiscovery,
    OpenIdConfiguration,
}

impl AtomicCounters {
    pub(crate) fn bump(&self, counter: Counter) {
        let cell = match counter {
            Counter::Requests => &self.requests,
            Counter::TokenRequests => &self.token_requests,
            Counter::TokensIssued => &self.tokens_issued,
            Counter::TokenErrors => &self.token_errors,
            Counter::FaultsInjected => &self.faults_injected,
            Counter::InstanceDiscovery => &self.instance_discovery_requests,
            Counter::OpenIdConfiguration => &self.openid_configuration_requests,
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection in; it counts out when the returned guard drops.
    pub(crate) fn connection_opened(self: &std::sync::Arc<Self>) -> OpenConnection {
        let open = self.open_connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open_connections
            .fetch_max(open, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let read = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        Counters {
            requests: read(&self.requests),
            token_requests: read(&self.token_requests),
            tokens_issued: read(&self.tokens_issued),
            token_errors: read(&self.token_errors),
            faults_injected: read(&self.faults_injected),
            instance_discovery_requests: read(&self.instance_discovery_requests),
            openid_configuration_requests: read(&self.openid_configuration_requests),
            open_connections: read(&self.open_connections),
            peak_open_connections: read(&self.peak_open_connections),
        }
    }

    pub(crate) fn reset(&self) {
        for cell in [
            &self.requests,
            &self.token_requests,
            &self.tokens_issued,
            &self.token_errors,
            &self.faults_injected,
            &self.instance_discovery_requests,
            &self.openid_configuration_requests,
        ] {
            cell.store(0, Ordering::Relaxed);
        }
        self.peak_open_connections.store(
            self.open_connections.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

/// A connection counted in [`Counters::open_connections`] until this drops.
pub(crate) struct OpenConnection(std::sync::Arc<AtomicCounters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bounded request log.
#[derive(Default)]
pub(crate) struct RequestLog {
    records: Mutex<LogRecords>,
}

#[derive(Default)]
struct LogRecords {
    /// Each record with its size in bytes.
    records: VecDeque<(RequestRecord, usize)>,
    bytes: usize,
}

impl RequestLog {
    pub(crate) fn push(&self, record: RequestRecord) {
        self.push_within(record, LOG_CAPACITY, LOG_BYTE_BUDGET);
    }

    fn push_within(&self, record: RequestRecord, capacity: usize, byte_budget: usize) {
        let size = record.text_size();
        let mut log = lock(&self.records);
        while log.records.len() >= capacity
            || (!log.records.is_empty() && log.bytes + size > byte_budget)
        {
            let Some((_, dropped)) = log.records.pop_front() else {
                break;
            };
            log.bytes -= dropped;
        }
        log.bytes += size;
        log.records.push_back((record, size));
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        lock(&self.records)
            .records
            .iter()
            .map(|(record, _)| record.clone())
            .collect()
    }

    pub(crate) fn clear(&self) {
        let mut log = lock(&self.records);
        log.records.clear();
        log.bytes = 0;
    }
}

impl RequestRecord {
    /// Roughly the memory the record's text takes.
    fn text_size(&self) -> usize {
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
        };
        self.method.len()
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + pairs(&self.headers)
            + pairs(&self.form)
            + self.client_auth.as_ref().map_or(0, String::len)
            + self.fault.as_ref().map_or(0, String::len)
    }
}

/// A fault to inject into the next `count` requests whose path ends with `path`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Matches a request whose path ends with this text (`/oauth2/v2.0/token` matches every
    /// tenant's token endpoint); `*` matches every path except the admin endpoints.
    pub path: String,
    /// How many matching requests meet the fault; 1 when absent.
    #[serde(default = "one")]
    pub count: u32,
    /// What happens to them.
    pub fault: Fault,
}

fn one() -> u32 {
    1
}

/// What an injected fault does to a request.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer with this status, an Entra-shaped `temporarily_unavailable` body and, when
    /// given, a `Retry-After` header (seconds).
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header value, in seconds.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Answer with this status, an Entra-shaped `temporarily_unavailable` body and this
    /// `Retry-After` header value as it is: an HTTP date such as
    /// `Wed, 21 Oct 2015 07:28:00 GMT`, or anything else a server might send.
    StatusRetryAfter {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header value, sent as it is.
        retry_after: String,
    },
    /// Answer with this status and this body (as `application/json`), as they are: a token
    /// response crafted by a test, such as one with an empty `access_token`.
    Body {
        /// The HTTP status code; 200 when absent.
        #[serde(default)]
        status: Option<u16>,
        /// The body, sent as it is.
        body: String,
    },
    /// Wait this long, then handle the request normally.
    Delay {
        /// The added latency in milliseconds.
        millis: u64,
    },
    /// Close the connection without answering.
    Drop,
    /// Answer 200 with a `Content-Length` longer than the body, then close the connection.
    Truncate,
    /// Answer 200 with bytes that are not JSON.
    Garbage,
    /// Answer with an HTML error page, as a proxy in front of Entra might.
    Html {
        /// The HTTP status code; 502 when absent.
        #[serde(default)]
        status: Option<u16>,
    },
}

impl Fault {
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Status { status, .. } | Self::StatusRetryAfter { status, .. } => {
                format!("status {status}")
            }
            Self::Body { status, .. } => format!("body {}", status.unwrap_or(200)),
            Self::Delay { millis } => format!("delay {millis}ms"),
            Self::Drop => "drop".to_owned(),
            Self::Truncate => "truncate".to_owned(),
            Self::Garbage => "garbage".to_owned(),
            Self::Html { .. } => "html".to_owned(),
        }
    }
}

/// Armed fault rules.
#[derive(Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    pub(crate) fn add(&self, rule: FaultRule) {
        if rule.count > 0 {
            lock(&self.rules).push(rule);
        }
    }

    pub(crate) fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// Takes one use of the first rule matching `path`.
    pub(crate) fn take(&self, path: &str) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let index = rules.iter().position(|rule| {
            (rule.path == "*" && !path.starts_with(crate::admin::ADMIN_PREFIX))
                || (rule.path != "*" && path.ends_with(&rule.path))
        })?;
        let rule = &mut rules[index];
        rule.count -= 1;
        let fault = rule.fault.clone();
        if rule.count == 0 {
            rules.remove(index);
        }
        Some(fault)
    }
}

/// Locks a mutex, carrying on if a panicking thread poisoned it: every structure guarded here
/// stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_redacted() {
        let form = RequestRecord::redact_form(&[
            ("client_secret".into(), "hunter2".into()),
            ("assertion".into(), "eyJ".into()),
            ("scope".into(), "a b".into()),
        ]);
        assert_eq!(form["client_secret"], "[redacted]");
        assert_eq!(form["assertion"], "[redacted]");
        assert_eq!(form["scope"], "a b");
    }

    #[test]
    fn secret_headers_show_only_a_short_fingerprint() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "authorization",
            "Bearer eyJ.secret".parse().expect("header"),
        );
        headers.insert("accept", "application/json".parse().expect("header"));
        let shown = RequestRecord::redact_headers(&headers);
        // sha256("Bearer eyJ.secret") starts with these four bytes.
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(b"Bearer eyJ.secret");
        let expected: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            shown["authorization"],
            format!("[redacted sha256:{expected}]")
        );
        assert!(!shown["authorization"].contains("secret"));
        assert_eq!(shown["accept"], "application/json");
    }

    #[test]
    fn faults_are_used_up_in_order() {
        let faults = Faults::default();
        faults.add(FaultRule {
            path: "/token".into(),
            count: 2,
            fault: Fault::Drop,
        });
        faults.add(FaultRule {
            path: "*".into(),
            count: 1,
            fault: Fault::Garbage,
        });
        assert_eq!(faults.take("/t/oauth2/v2.0/token"), Some(Fault::Drop));
        assert_eq!(faults.take("/_emulator/info"), None);
        assert_eq!(faults.take("/t/v2.0/keys"), Some(Fault::Garbage));
        assert_eq!(faults.take("/x/token"), Some(Fault::Drop));
        assert_eq!(faults.take("/x/token"), None);
    }

    #[test]
    fn fault_rules_parse_from_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/token","count":3,"fault":{"status":{"status":429,"retry_after":2}}}"#,
        )
        .expect("json");
        assert_eq!(
            rule.fault,
            Fault::Status {
                status: 429,
                retry_after: Some(2)
            }
        );
        let rule: FaultRule = serde_json::from_str(r#"{"path":"*","fault":"drop"}"#).expect("json");
        assert_eq!(rule.count, 1);
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/token","fault":{"status_retry_after":{"status":429,"retry_after":"Wed, 21 Oct 2015 07:28:00 GMT"}}}"#,
        )
        .expect("json");
        assert_eq!(rule.fault.label(), "status 429");
        let rule: FaultRule = serde_json::from_str(
            r#"{"path":"/token","fault":{"body":{"body":"{\"access_token\":\"\"}"}}}"#,
        )
        .expect("json");
        assert_eq!(
            rule.fault,
            Fault::Body {
                status: None,
                body: r#"{"access_token":""}"#.to_owned()
            }
        );
    }

    fn record_with_form_value(value: &str) -> RequestRecord {
        RequestRecord {
            time: 0.0,
            method: "POST".to_owned(),
            path: "/t/oauth2/v2.0/token".to_owned(),
            query: None,
            headers: BTreeMap::new(),
            form: BTreeMap::from([("scope".to_owned(), value.to_owned())]),
            client_auth: None,
            status: 400,
            error_code: None,
            fault: None,
        }
    }

    #[test]
    fn the_log_keeps_within_its_count_and_byte_budget() {
        let log = RequestLog::default();
        for index in 0..10 {
            log.push_within(record_with_form_value(&index.to_string()), 3, 1 << 20);
        }
        let scopes: Vec<_> = log
            .snapshot()
            .iter()
            .map(|record| record.form["scope"].clone())
            .collect();
        assert_eq!(scopes, ["7", "8", "9"]);

        let large = "x".repeat(1000);
        for _ in 0..10 {
            log.push_within(record_with_form_value(&large), 100, 3_500);
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), 3);
        let bytes: usize = kept.iter().map(RequestRecord::text_size).sum();
        assert!(bytes <= 3_500, "{bytes}");
        // A record larger than the whole budget is still kept alone (the newest is shown).
        log.push_within(record_with_form_value(&"y".repeat(5000)), 100, 3_500);
        assert_eq!(log.snapshot().len(), 1);
    }
}
