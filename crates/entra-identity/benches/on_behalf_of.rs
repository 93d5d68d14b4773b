//! `OnBehalfOfApplication` serving many users, against one in-process emulator, in one run.
//!
//! `cargo bench -p entra-identity --bench on_behalf_of`
//!
//! 1. memory: 100,000 users cached in one application (one scope each), filled by real
//!    on-behalf-of exchanges with the emulator; heap bytes per cached user, raw and beyond the
//!    access and refresh tokens, against the cache's own estimate (`TokenCache::bytes`);
//! 2. cache hits at 1, 1,000, 10,000 and 100,000 cached users: an existing per-user credential,
//!    and `credential_for(assertion)` + `get_token` (which hashes the assertion);
//! 3. a user's first token (new credential, cache miss, real exchange) against a bare reqwest
//!    POST of the same form over a warm connection;
//! 4. certificate signing per request: `AssertionSigner::assertion` reused against re-signed;
//! 5. Python azure-identity's `OnBehalfOfCredential` (sync and async), one credential per user
//!    as its users must use it, against the same emulator (skipped without
//!    `tests/interop/.venv`).
//!
//! The emulator runs on a runtime of its own (two worker threads); everything on the client
//! side runs on this thread (a current-thread runtime, or futures polled directly with a no-op
//! waker), so `allocation-counter`, which counts per thread, sees every client allocation and
//! none of the emulator's.
//!
//! Users: the emulator looks users up by a linear scan, so 2,000 are registered and each gets
//! several user assertions (distinct `exp`); the library keys its cache by the SHA-256 of the
//! assertion, so every assertion is a user of its own to it, with a partition, an access token
//! and a refresh token.

#![allow(missing_docs)]

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use entra_emulator::{
    ApplicationConfig, CertificateConfig, Emulator, EmulatorConfig, TenantConfig, UserConfig,
    UserTokenRequest,
};
use entra_identity::internal::AssertionSigner;
use entra_identity::{
    AccessToken, CredentialError, HttpOptions, MapEnvironment, OnBehalfOfApplication,
    OnBehalfOfCredential, TokenCache,
};
use futures_util::StreamExt as _;

const TENANT: &str = "cccccccc-0000-0000-0000-0000000000b0";
const API: &str = "c0000000-0000-0000-0000-000000000001";
const DOWNSTREAM: &str = "c0000000-0000-0000-0000-000000000002";
const SECRET: &str = "middle-tier-secret";
const SCOPE: &str = "api://downstream/Data.Read";
const SCOPES: &[&str] = &[SCOPE];
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Users registered in the emulator (it scans them linearly on every exchange).
const REGISTERED_USERS: usize = 2_000;
/// Cached users at which lookups are timed; the fill stops at the last.
const SIZES: [usize; 4] = [1, 1_000, 10_000, 100_000];
/// Exchanges in flight while filling.
const FILL_CONCURRENCY: usize = 12;
/// Users whose credentials the lookups cycle through.
const LOOKUP_SAMPLE: usize = 1_024;
const LOOKUP_BATCHES: usize = 31;
const LOOKUP_BATCH_CALLS: usize = 10_000;
const ALLOC_CALLS: usize = 10_000;
const FIRST_TOKEN_USERS: usize = 50;
const SIGN_REUSED_BATCHES: usize = 21;
const SIGN_REUSED_CALLS: usize = 10_000;
const SIGN_FRESH_CALLS: usize = 150;
const PYTHON_USERS: usize = 200;
/// A partition per user, a slot per scope: room for everything, so nothing is evicted.
const CACHE_ENTRIES: usize = 200_000;
const CACHE_BYTES: usize = 1 << 30;

fn user_oid(index: usize) -> String {
    format!("c1000000-0000-0000-0000-{index:012}")
}

/// Assertion number `index`: user `index % REGISTERED_USERS`, its `exp` one second later for
/// every round over the registered users (its `iat` differs anyway once a second passes).
fn user_assertion(emulator: &Emulator, index: usize) -> String {
    emulator
        .mint_user_token(&UserTokenRequest {
            user: user_oid(index % REGISTERED_USERS),
            audience: API.to_owned(),
            expires_in_secs: Some(3_600 + (index / REGISTERED_USERS) as i64),
            ..UserTokenRequest::default()
        })
        .expect("user token")
}

/// Mints assertions on two threads (RS256 signing is most of the cost).
fn mint(emulator: &Emulator, range: Range<usize>) -> Vec<String> {
    let middle = range.start + range.len() / 2;
    let mint_range = |range: Range<usize>| -> Vec<String> {
        range.map(|index| user_assertion(emulator, index)).collect()
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| mint_range(range.start..middle));
        let mut second = mint_range(middle..range.end);
        let mut all = first.join().expect("minting thread");
        all.append(&mut second);
        all
    })
}

fn config() -> EmulatorConfig {
    EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.to_owned()),
            applications: vec![
                ApplicationConfig {
                    name: "middle-tier".to_owned(),
                    client_id: Some(API.to_owned()),
                    secrets: vec![SECRET.to_owned()],
                    certificates: vec![CertificateConfig::default()],
                    ..ApplicationConfig::default()
                },
                ApplicationConfig {
                    name: "downstream".to_owned(),
                    client_id: Some(DOWNSTREAM.to_owned()),
                    app_id_uri: Some("api://downstream".to_owned()),
                    ..ApplicationConfig::default()
                },
            ],
            users: (0..REGISTERED_USERS)
                .map(|index| UserConfig {
                    object_id: Some(user_oid(index)),
                    upn: format!("user{index}@bench.example"),
                    name: None,
                })
                .collect(),
            ..TenantConfig::default()
        }],
        ..EmulatorConfig::default()
    }
}

fn get<'a>(
    credential: &'a OnBehalfOfCredential,
) -> impl Future<Output = Result<AccessToken, CredentialError>> + Send + 'a {
    entra_identity::TokenCredential::get_token(
        credential,
        SCOPES,
        entra_identity::TokenRequestOptions::new(),
    )
}

/// Polls a future to completion on this thread with a no-op waker. A cache hit completes on
/// the first poll.
fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

fn median<T: PartialOrd + Copy>(values: &mut [T]) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    values[values.len() / 2]
}

fn percentile(values: &mut [Duration], fraction: f64) -> Duration {
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * fraction).round() as usize;
    values[index]
}

fn average(values: &[usize]) -> f64 {
    values.iter().sum::<usize>() as f64 / values.len().max(1) as f64
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn us(duration: Duration) -> String {
    format!("{:.1} us", duration.as_secs_f64() * 1e6)
}

fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

struct Bench {
    emulator: Emulator,
    client: tokio::runtime::Runtime,
    application: OnBehalfOfApplication,
    cache: TokenCache,
    /// Every assertion minted so far, by index.
    assertions: Vec<String>,
}

// 1. and 2. ----------------------------------------------------------------------------------

/// What filling one stage of the cache did.
struct Stage {
    from: usize,
    to: usize,
    wall: Duration,
    mint: Duration,
    heap_bytes: i64,
    heap_allocations: i64,
    estimate_bytes: usize,
    access_token_bytes: usize,
    failures: usize,
}

impl Stage {
    fn users(&self) -> usize {
        self.to - self.from
    }
}

/// Median ns and allocations per call of one way to get a cached token.
struct Lookup {
    ns_per_call: f64,
    allocations_per_call: f64,
    bytes_per_call: f64,
}

struct Lookups {
    size: usize,
    existing: Lookup,
    /// The same number of users, the oldest ones (allocated together, early): the control
    /// for memory locality, since their entries sit as close together at every size.
    existing_oldest: Lookup,
    hot: Lookup,
    credential_for: Lookup,
    credential_for_oldest: Lookup,
}

/// Exchanges the assertions `range` for tokens, `FILL_CONCURRENCY` at a time, each through a
/// new credential from the application (dropped afterwards), and counts what stays on the heap.
fn fill(bench: &mut Bench, range: Range<usize>) -> Stage {
    let started = Instant::now();
    let minted = mint(&bench.emulator, bench.assertions.len()..range.end);
    bench.assertions.extend(minted);
    let mint_time = started.elapsed();
    let bytes_before = bench.cache.bytes();
    let (application, assertions) = (&bench.application, &bench.assertions);
    let mut outcome = (0usize, 0usize);
    let started = Instant::now();
    let heap = allocation_counter::measure(|| {
        outcome = bench.client.block_on(async {
            let results = futures_util::stream::iter(range.clone())
                .map(|index| async move {
                    let credential = application
                        .credential_for(assertions[index].as_str())
                        .expect("credential");
                    get(&credential)
                        .await
                        .map(|token| token.token.expose_secret().len())
                })
                .buffer_unordered(FILL_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            results
                .iter()
                .fold((0, 0), |(bytes, failures), result| match result {
                    Ok(length) => (bytes + length, failures),
                    Err(_) => (bytes, failures + 1),
                })
        });
    });
    Stage {
        from: range.start,
        to: range.end,
        wall: started.elapsed(),
        mint: mint_time,
        heap_bytes: heap.bytes_current,
        heap_allocations: heap.count_current,
        estimate_bytes: bench.cache.bytes() - bytes_before,
        access_token_bytes: outcome.0,
        failures: outcome.1,
    }
}

/// Times `call(i)` for i = 0, 1, 2, ...: the median over batches, then allocations.
fn time_calls(mut call: impl FnMut(usize)) -> Lookup {
    let mut next = 0usize;
    let mut batch = |calls: usize| {
        for _ in 0..calls {
            call(next);
            next = next.wrapping_add(1);
        }
    };
    batch(LOOKUP_BATCH_CALLS); // warm-up
    let mut per_call: Vec<f64> = (0..LOOKUP_BATCHES)
        .map(|_| {
            let started = Instant::now();
            batch(LOOKUP_BATCH_CALLS);
            started.elapsed().as_nanos() as f64 / LOOKUP_BATCH_CALLS as f64
        })
        .collect();
    let allocations = allocation_counter::measure(|| batch(ALLOC_CALLS));
    Lookup {
        ns_per_call: median(&mut per_call),
        allocations_per_call: allocations.count_total as f64 / ALLOC_CALLS as f64,
        bytes_per_call: allocations.bytes_total as f64 / ALLOC_CALLS as f64,
    }
}

/// Credentials for `assertions`, each with its token fetched once (a cache hit).
fn warm_credentials(bench: &Bench, assertions: &[&str]) -> Vec<OnBehalfOfCredential> {
    assertions
        .iter()
        .map(|assertion| {
            let credential = bench
                .application
                .credential_for(*assertion)
                .expect("credential");
            poll_now(get(&credential)).expect("a cached token");
            credential
        })
        .collect()
}

/// Cache hits with `size` users cached, over up to `LOOKUP_SAMPLE` of them spread evenly, and
/// over as many of the oldest.
fn lookups(bench: &Bench, size: usize) -> Lookups {
    let sampled = size.min(LOOKUP_SAMPLE);
    let spread: Vec<&str> = (0..sampled)
        .map(|n| bench.assertions[n * size / sampled].as_str())
        .collect();
    let oldest: Vec<&str> = bench.assertions[..sampled]
        .iter()
        .map(String::as_str)
        .collect();
    let hit = |credential: &OnBehalfOfCredential| {
        let token = poll_now(get(credential)).expect("a cached token");
        std::hint::black_box(token);
    };
    let cycle = |credentials: &[OnBehalfOfCredential]| {
        time_calls(|i| hit(&credentials[i % credentials.len()]))
    };
    let via_application = |assertions: &[&str]| {
        time_calls(|i| {
            let credential = bench
                .application
                .credential_for(assertions[i % assertions.len()])
                .expect("credential");
            hit(&credential);
        })
    };
    let spread_credentials = warm_credentials(bench, &spread);
    let existing = cycle(&spread_credentials);
    let hot = time_calls(|_| hit(&spread_credentials[0]));
    drop(spread_credentials);
    let existing_oldest = cycle(&warm_credentials(bench, &oldest));
    Lookups {
        size,
        existing,
        existing_oldest,
        hot,
        credential_for: via_application(&spread),
        credential_for_oldest: via_application(&oldest),
    }
}

// 3. ------------------------------------------------------------------------------------------

struct FirstTokens {
    bare: Vec<Duration>,
    ours: Vec<Duration>,
    refresh_token_lengths: Vec<usize>,
    access_token_lengths: Vec<usize>,
}

/// A bare reqwest POST of the exchange form; returns the access and refresh token lengths.
async fn bare_post(client: &reqwest::Client, url: &str, assertion: &str) -> (usize, usize) {
    let response = client
        .post(url)
        .form(&[
            ("client_id", API),
            ("grant_type", JWT_BEARER),
            ("client_info", "1"),
            ("client_secret", SECRET),
            ("requested_token_use", "on_behalf_of"),
            (
                "scope",
                "api://downstream/Data.Read offline_access openid profile",
            ),
            ("assertion", assertion),
        ])
        .send()
        .await
        .expect("bare POST");
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.bytes().await.expect("body");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let length = |field: &str| json[field].as_str().map_or(0, str::len);
    (length("access_token"), length("refresh_token"))
}

fn first_tokens(bench: &mut Bench) -> FirstTokens {
    let start = bench.assertions.len();
    let minted = mint(&bench.emulator, start..start + 2 * FIRST_TOKEN_USERS + 1);
    bench.assertions.extend(minted);
    let fresh = &bench.assertions[start..];
    let url = bench.emulator.token_endpoint(TENANT);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(bench.emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("reqwest client");
    let application = &bench.application;
    bench.client.block_on(async {
        let mut first = FirstTokens {
            bare: Vec::new(),
            ours: Vec::new(),
            refresh_token_lengths: Vec::new(),
            access_token_lengths: Vec::new(),
        };
        // Warms the bare client's connection; ours is warm from the fill.
        bare_post(&client, &url, &fresh[2 * FIRST_TOKEN_USERS]).await;
        for user in 0..FIRST_TOKEN_USERS {
            let started = Instant::now();
            let (access, refresh) = bare_post(&client, &url, &fresh[2 * user]).await;
            first.bare.push(started.elapsed());
            first.access_token_lengths.push(access);
            first.refresh_token_lengths.push(refresh);

            let started = Instant::now();
            let credential = application
                .credential_for(fresh[2 * user + 1].as_str())
                .expect("credential");
            std::hint::black_box(get(&credential).await.expect("first token"));
            first.ours.push(started.elapsed());
        }
        first
    })
}

// 4. ------------------------------------------------------------------------------------------

struct Signing {
    reused_ns: f64,
    reused_allocations: f64,
    fresh_time: Duration,
    fresh_audience: Duration,
}

fn signing(bench: &Bench) -> Signing {
    let info = bench.emulator.info();
    let application = info.tenants[0]
        .applications
        .iter()
        .find(|application| application.client_id == API)
        .expect("middle tier");
    let path = application.certificates[0]
        .combined_pem_path
        .as_ref()
        .expect("a combined PEM");
    let pem = std::fs::read(path).expect("PEM file");
    let signer = AssertionSigner::new(&pem, None).expect("certificate");
    let audience = bench.emulator.token_endpoint(TENANT);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;

    signer.assertion(API, &audience, now).expect("assertion");
    let mut reused: Vec<f64> = (0..SIGN_REUSED_BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..SIGN_REUSED_CALLS {
                std::hint::black_box(signer.assertion(API, &audience, now).expect("assertion"));
            }
            started.elapsed().as_nanos() as f64 / SIGN_REUSED_CALLS as f64
        })
        .collect();
    let allocations = allocation_counter::measure(|| {
        for _ in 0..SIGN_REUSED_CALLS {
            std::hint::black_box(signer.assertion(API, &audience, now).expect("assertion"));
        }
    });

    // A time more than five minutes on each call; then a new audience each call.
    let mut fresh_time: Vec<Duration> = (1..=SIGN_FRESH_CALLS as i64)
        .map(|call| {
            let started = Instant::now();
            std::hint::black_box(
                signer
                    .assertion(API, &audience, now + 301 * call)
                    .expect("assertion"),
            );
            started.elapsed()
        })
        .collect();
    let audiences: Vec<String> = (0..SIGN_FRESH_CALLS)
        .map(|call| format!("{audience}?{call}"))
        .collect();
    let mut fresh_audience: Vec<Duration> = audiences
        .iter()
        .map(|audience| {
            let started = Instant::now();
            std::hint::black_box(signer.assertion(API, audience, now).expect("assertion"));
            started.elapsed()
        })
        .collect();
    Signing {
        reused_ns: median(&mut reused),
        reused_allocations: allocations.count_total as f64 / SIGN_REUSED_CALLS as f64,
        fresh_time: median(&mut fresh_time),
        fresh_audience: median(&mut fresh_audience),
    }
}

// 5. ------------------------------------------------------------------------------------------

/// One credential per user, as a web API using azure-identity must: construct, get a token,
/// get it again. Reads its parameters as JSON on stdin, writes timings as JSON on stdout.
/// Refuses any name lookup or connection that is not loopback.
const PYTHON_SCRIPT: &str = r#"
import asyncio, ipaddress, json, socket, sys, time

def loopback(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    name = str(host).strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False

blocked = []
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
def guarded_getaddrinfo(host, *args, **kwargs):
    if not loopback(host):
        blocked.append(repr(host))
        raise socket.gaierror(socket.EAI_NONAME, "bench guard: not loopback")
    return real_getaddrinfo(host, *args, **kwargs)
def guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
        blocked.append(repr(address))
        raise ConnectionRefusedError("bench guard: not loopback")
    return real_connect(self, address)
socket.getaddrinfo = guarded_getaddrinfo
socket.socket.connect = guarded_connect

params = json.load(sys.stdin)
from azure.identity import OnBehalfOfCredential, __version__ as version
from azure.identity.aio import OnBehalfOfCredential as AsyncOnBehalfOfCredential

def sync_user(assertion):
    t0 = time.perf_counter()
    credential = OnBehalfOfCredential(
        params["tenant"], params["client_id"], client_secret=params["secret"],
        user_assertion=assertion, authority=params["url"], disable_instance_discovery=True,
        connection_verify=params["ca"])
    t1 = time.perf_counter()
    first = credential.get_token(params["scope"])
    t2 = time.perf_counter()
    second = credential.get_token(params["scope"])
    t3 = time.perf_counter()
    credential.close()
    return [t1 - t0, t2 - t1, t3 - t2, first.token == second.token]

async def async_user(assertion):
    t0 = time.perf_counter()
    credential = AsyncOnBehalfOfCredential(
        params["tenant"], params["client_id"], client_secret=params["secret"],
        user_assertion=assertion, authority=params["url"], connection_verify=params["ca"])
    t1 = time.perf_counter()
    first = await credential.get_token(params["scope"])
    t2 = time.perf_counter()
    second = await credential.get_token(params["scope"])
    t3 = time.perf_counter()
    await credential.close()
    return [t1 - t0, t2 - t1, t3 - t2, first.token == second.token]

async def async_all(assertions):
    return [await async_user(assertion) for assertion in assertions]

import ssl, urllib.request
context = ssl.create_default_context(cafile=params["ca"])
def requests_sent():
    with urllib.request.urlopen(params["url"] + "/_emulator/counters", context=context) as answer:
        counters = json.load(answer)
    return sum(counters[name] for name in
               ("token_requests", "openid_configuration_requests", "instance_discovery_requests"))

warmup, sync_users, async_users = params["warmup"], params["sync"], params["async"]
for assertion in warmup[:2]:
    sync_user(assertion)
asyncio.run(async_all(warmup[2:]))
out = {"version": version}
before = requests_sent()
out["sync"] = [sync_user(a) for a in sync_users]
middle = requests_sent()
out["async"] = asyncio.run(async_all(async_users))
after = requests_sent()
out["sync_requests"], out["async_requests"] = middle - before, after - middle
out["blocked"] = blocked
json.dump(out, sys.stdout)
"#;

/// Medians of one Python flavour, per user.
struct PythonRun {
    construct: Duration,
    first: Duration,
    construct_and_first: Duration,
    second: Duration,
    second_cached: usize,
    users: usize,
    requests_per_user: f64,
}

struct Python {
    version: String,
    sync: PythonRun,
    asynchronous: PythonRun,
}

fn python(bench: &mut Bench) -> Result<Python, String> {
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/.venv/bin/python");
    if !venv.is_file() {
        return Err(format!(
            "skipped: no {} (create it with `bash tests/interop/run.sh`)",
            venv.display()
        ));
    }
    let start = bench.assertions.len();
    let minted = mint(&bench.emulator, start..start + 2 * PYTHON_USERS + 4);
    bench.assertions.extend(minted);
    let fresh = &bench.assertions[start..];
    let input = serde_json::json!({
        "tenant": TENANT,
        "client_id": API,
        "secret": SECRET,
        "scope": SCOPE,
        "url": bench.emulator.url(),
        "ca": bench.emulator.ca_pem_path(),
        "warmup": &fresh[..4],
        "sync": &fresh[4..4 + PYTHON_USERS],
        "async": &fresh[4 + PYTHON_USERS..],
    });
    let ca = bench.emulator.ca_pem_path();
    let mut child = Command::new(&venv)
        .arg("-c")
        .arg(PYTHON_SCRIPT)
        .env_clear()
        .env("REQUESTS_CA_BUNDLE", ca)
        .env("SSL_CERT_FILE", ca)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("skipped: cannot run {}: {error}", venv.display()))?;
    let stdin = child.stdin.take().expect("stdin");
    // Python reads all of stdin before it writes; write from another thread all the same.
    let writer = std::thread::spawn(move || {
        let mut stdin = stdin;
        serde_json::to_writer(&mut stdin, &input)
    });
    let output = child.wait_with_output().expect("python ran");
    writer
        .join()
        .expect("writer thread")
        .map_err(|error| format!("failed: writing to Python: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let out: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("failed: unreadable output ({error})"))?;
    if out["blocked"]
        .as_array()
        .is_some_and(|blocked| !blocked.is_empty())
    {
        return Err(format!(
            "failed: non-loopback access attempted: {}",
            out["blocked"]
        ));
    }
    let run = |name: &str| -> PythonRun {
        let rows = out[name].as_array().cloned().unwrap_or_default();
        let column = |index: usize| -> Vec<Duration> {
            rows.iter()
                .map(|row| Duration::from_secs_f64(row[index].as_f64().unwrap_or(f64::NAN)))
                .collect()
        };
        let (mut construct, mut first, mut second) = (column(0), column(1), column(2));
        let mut total: Vec<Duration> = construct.iter().zip(&first).map(|(a, b)| *a + *b).collect();
        PythonRun {
            construct: median(&mut construct),
            first: median(&mut first),
            construct_and_first: median(&mut total),
            second: median(&mut second),
            second_cached: rows
                .iter()
                .filter(|row| row[3].as_bool() == Some(true))
                .count(),
            users: rows.len(),
            requests_per_user: 0.0,
        }
    };
    let mut sync = run("sync");
    let mut asynchronous = run("async");
    let requests =
        |name: &str, users: usize| out[name].as_f64().unwrap_or(f64::NAN) / users.max(1) as f64;
    sync.requests_per_user = requests("sync_requests", sync.users);
    asynchronous.requests_per_user = requests("async_requests", asynchronous.users);
    Ok(Python {
        version: out["version"].as_str().unwrap_or("?").to_owned(),
        sync,
        asynchronous,
    })
}

// main ----------------------------------------------------------------------------------------

fn main() {
    let run_started = Instant::now();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("emulator runtime");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let emulator = server
        .block_on(Emulator::builder().config(config()).start())
        .expect("emulator starts");
    let cache = TokenCache::with_limits(CACHE_ENTRIES, CACHE_BYTES);
    let application = OnBehalfOfApplication::builder(TENANT, API)
        .client_secret(SECRET)
        .authority(emulator.url())
        .instance_discovery_host(emulator.url())
        .http_options(HttpOptions::default().trust_pem(emulator.ca_pem()))
        .environment(Arc::new(MapEnvironment::new()))
        .token_cache(cache.clone())
        .build()
        .expect("application");
    let mut bench = Bench {
        emulator,
        client,
        application,
        cache,
        assertions: Vec::new(),
    };
    println!(
        "OnBehalfOfApplication (client secret), emulator at {}, {REGISTERED_USERS} users registered\n",
        bench.emulator.url()
    );

    let mut stages = Vec::new();
    let mut hits = Vec::new();
    let mut filled = 0;
    for size in SIZES {
        let stage = fill(&mut bench, filled..size);
        assert_eq!(stage.failures, 0, "exchanges failed while filling");
        assert_eq!(bench.cache.len(), size, "every user cached, none evicted");
        eprintln!(
            "filled {} users in {:.1} s (+{:.1} s minting assertions)",
            thousands(size),
            stage.wall.as_secs_f64(),
            stage.mint.as_secs_f64()
        );
        stages.push(stage);
        filled = size;
        hits.push(lookups(&bench, size));
    }
    let cache_after_fill = (bench.cache.bytes(), bench.cache.len());
    let first = first_tokens(&mut bench);
    let signing = signing(&bench);
    eprintln!("running Python azure-identity ...");
    let python = python(&mut bench);

    print_memory(&stages, &first, cache_after_fill);
    print_lookups(&hits);
    print_first(&first);
    print_signing(&signing);
    print_python(&python, &first, &hits);
    println!(
        "\ntotal run time {:.1} s",
        run_started.elapsed().as_secs_f64()
    );
    let Bench {
        emulator, client, ..
    } = bench;
    drop(emulator);
    client.shutdown_timeout(Duration::from_secs(1));
    server.shutdown_timeout(Duration::from_secs(1));
}

// Output ---------------------------------------------------------------------------------------

fn row(metric: &str, value: &str, note: &str) {
    println!("  {metric:<52} {value:>14}  {note}");
}

fn print_memory(stages: &[Stage], first: &FirstTokens, (cache_bytes, cache_len): (usize, usize)) {
    let users: usize = stages.iter().map(Stage::users).sum();
    let wall: Duration = stages.iter().map(|stage| stage.wall).sum();
    let mint: Duration = stages.iter().map(|stage| stage.mint).sum();
    println!(
        "1. memory: {} users in one OnBehalfOfApplication, one scope each (real exchanges)",
        thousands(users)
    );
    row(
        "fill: exchanges / wall time",
        &format!("{:.1} s", wall.as_secs_f64()),
        &format!(
            "{} exchanges, {:.0}/s, {FILL_CONCURRENCY} in flight; minting assertions {:.1} s",
            thousands(users),
            users as f64 / wall.as_secs_f64(),
            mint.as_secs_f64()
        ),
    );
    println!(
        "  {:<24} {:>12} {:>14} {:>12} {:>12} {:>14}",
        "stage (cached users)",
        "users added",
        "heap growth",
        "bytes/user",
        "allocs/user",
        "estimate/user"
    );
    for stage in stages {
        let users = stage.users() as f64;
        println!(
            "  {:<24} {:>12} {:>14} {:>12.0} {:>12.2} {:>14.0}",
            format!("{} -> {}", thousands(stage.from), thousands(stage.to)),
            thousands(stage.users()),
            thousands(stage.heap_bytes.max(0) as usize),
            stage.heap_bytes as f64 / users,
            stage.heap_allocations as f64 / users,
            stage.estimate_bytes as f64 / users,
        );
    }
    println!(
        "  (the first stages also build the HTTP client, open the pool, validate the authority)"
    );
    // The headline leaves out the first 1,000 users: they also open the connection pool.
    let measured: Vec<&Stage> = stages.iter().filter(|stage| stage.from >= 1_000).collect();
    let measured_users: usize = measured.iter().map(|stage| stage.users()).sum();
    let heap: i64 = measured.iter().map(|stage| stage.heap_bytes).sum();
    let allocations: i64 = measured.iter().map(|stage| stage.heap_allocations).sum();
    let estimate: usize = measured.iter().map(|stage| stage.estimate_bytes).sum();
    let access: usize = measured.iter().map(|stage| stage.access_token_bytes).sum();
    let per_user = heap as f64 / measured_users as f64;
    let access_length = access as f64 / measured_users as f64;
    let refresh_length = average(&first.refresh_token_lengths);
    let net = per_user - access_length - refresh_length;
    let estimate_per_user = estimate as f64 / measured_users as f64;
    println!(
        "  over the {} users cached after the first 1,000 (the pool is open by then):",
        thousands(measured_users)
    );
    row(
        "heap bytes per cached user (raw)",
        &format!("{per_user:.0} B"),
        &format!(
            "{:.2} allocations per user",
            allocations as f64 / measured_users as f64
        ),
    );
    row(
        "average access token length",
        &format!("{access_length:.0} B"),
        "from get_token",
    );
    row(
        "average refresh token length",
        &format!("{refresh_length:.0} B"),
        "from the bare POSTs of section 3 (same emulator)",
    );
    row(
        "bytes per entry beyond the tokens (net)",
        &format!("{net:.0} B"),
        &format!(
            "target <= 256: {}",
            if net <= 256.0 { "met" } else { "NOT met" }
        ),
    );
    row(
        "TokenCache::bytes() estimate per user",
        &format!("{estimate_per_user:.0} B"),
        &format!(
            "{:.2}x the measured heap; cache total {} B for {} entries",
            estimate_per_user / per_user,
            thousands(cache_bytes),
            thousands(cache_len)
        ),
    );
    row(
        "  its overhead beyond the tokens",
        &format!(
            "{:.0} B",
            estimate_per_user - access_length - refresh_length
        ),
        "(a fixed ENTRY_OVERHEAD_BYTES = 256 B per slot)",
    );
    println!(
        "  (requested bytes, counted by allocation-counter on the client thread; malloc's own\n   per-allocation overhead, typically 8-16 B each, comes on top)\n"
    );
}

fn print_lookups(hits: &[Lookups]) {
    println!(
        "2. cache-hit get_token: median ns per call (batches of {LOOKUP_BATCH_CALLS}), cycling over min(users, {LOOKUP_SAMPLE}) cached users"
    );
    println!(
        "  {:<14} {:>16} {:>16} {:>12} {:>18} {:>18}",
        "", "existing cred.", "existing cred.", "one hot", "credential_for", "credential_for"
    );
    println!(
        "  {:<14} {:>16} {:>16} {:>12} {:>18} {:>18}",
        "cached users",
        "spread users",
        "oldest users",
        "credential",
        "+ get_token spread",
        "+ get_token oldest"
    );
    for hit in hits {
        let ns = |lookup: &Lookup| format!("{:.0} ns", lookup.ns_per_call);
        println!(
            "  {:<14} {:>16} {:>16} {:>12} {:>18} {:>18}",
            thousands(hit.size),
            ns(&hit.existing),
            ns(&hit.existing_oldest),
            ns(&hit.hot),
            ns(&hit.credential_for),
            ns(&hit.credential_for_oldest),
        );
    }
    let spread = |pick: fn(&Lookups) -> f64| {
        let values: Vec<f64> = hits.iter().skip(1).map(pick).collect();
        let (low, high) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        format!("{:.2}x", high / low)
    };
    println!(
        "  max/min over 1,000..100,000 users: {:>9} {:>16} {:>12} {:>18} {:>18}",
        spread(|hit| hit.existing.ns_per_call),
        spread(|hit| hit.existing_oldest.ns_per_call),
        spread(|hit| hit.hot.ns_per_call),
        spread(|hit| hit.credential_for.ns_per_call),
        spread(|hit| hit.credential_for_oldest.ns_per_call),
    );
    if let Some(last) = hits.last() {
        let allocations = |lookup: &Lookup| {
            format!(
                "{:.1} ({:.0} B)",
                lookup.allocations_per_call, lookup.bytes_per_call
            )
        };
        println!(
            "  heap allocations per call: existing credential {}, credential_for + get_token {}\n",
            allocations(&last.existing),
            allocations(&last.credential_for)
        );
    }
}

fn print_first(first: &FirstTokens) {
    let mut bare = first.bare.clone();
    let mut ours = first.ours.clone();
    let (bare_median, ours_median) = (median(&mut bare), median(&mut ours));
    println!(
        "3. a user's first token over a warm connection (median of {FIRST_TOKEN_USERS} users each, interleaved)"
    );
    row(
        "bare reqwest POST of the same form (+ JSON parse)",
        &ms(bare_median),
        &format!("p90 {}", ms(percentile(&mut bare, 0.9))),
    );
    row(
        "credential_for + get_token (miss, exchange, store)",
        &ms(ours_median),
        &format!("p90 {}", ms(percentile(&mut ours, 0.9))),
    );
    row(
        "ratio ours / bare",
        &format!(
            "{:.2}x",
            ours_median.as_secs_f64() / bare_median.as_secs_f64()
        ),
        "target <= 1.2",
    );
    row(
        "  difference",
        &us(ours_median.saturating_sub(bare_median)),
        &format!(
            "access token {:.0} B, refresh token {:.0} B",
            average(&first.access_token_lengths),
            average(&first.refresh_token_lengths)
        ),
    );
    println!();
}

fn print_signing(signing: &Signing) {
    println!("4. client assertion signing (AssertionSigner::assertion, PS256, RSA-2048)");
    row(
        "reused (same audience, within 5 minutes)",
        &format!("{:.0} ns", signing.reused_ns),
        &format!("{:.1} allocations per call", signing.reused_allocations),
    );
    row(
        "fresh signature (time +301 s each call)",
        &us(signing.fresh_time),
        &format!("median of {SIGN_FRESH_CALLS}"),
    );
    row(
        "fresh signature (new audience each call)",
        &us(signing.fresh_audience),
        &format!("median of {SIGN_FRESH_CALLS}"),
    );
    row(
        "ratio fresh / reused",
        &format!(
            "{:.0}x",
            signing.fresh_time.as_nanos() as f64 / signing.reused_ns
        ),
        "",
    );
    println!();
}

fn print_python(python: &Result<Python, String>, first: &FirstTokens, hits: &[Lookups]) {
    let python = match python {
        Ok(python) => python,
        Err(message) => {
            println!("5. Python azure-identity: {message}");
            return;
        }
    };
    let Some(largest) = hits.last() else {
        return;
    };
    let ours_first = median(&mut first.ours.clone());
    let ours_hit = largest.existing.ns_per_call * 1e-9;
    let ours_for_hit = largest.credential_for.ns_per_call * 1e-9;
    println!(
        "5. Python azure-identity {} OnBehalfOfCredential, a new credential per user (median of {PYTHON_USERS} users each)",
        python.version
    );
    let line = |metric: &str, sync: String, asynchronous: String, ours: String| {
        println!("  {metric:<46} {sync:>14} {asynchronous:>16} {ours:>16}");
    };
    let both = |metric: &str, pick: &dyn Fn(&PythonRun) -> String, ours: String| {
        line(metric, pick(&python.sync), pick(&python.asynchronous), ours);
    };
    line(
        "",
        "sync (MSAL)".to_owned(),
        "async (aiohttp)".to_owned(),
        "entra-identity".to_owned(),
    );
    both(
        "construct the credential",
        &|run| ms(run.construct),
        "-".to_owned(),
    );
    both("first get_token", &|run| ms(run.first), "-".to_owned());
    both(
        "construct + first get_token",
        &|run| ms(run.construct_and_first),
        ms(ours_first),
    );
    both(
        "  ratio to entra-identity",
        &|run| {
            format!(
                "{:.1}x",
                run.construct_and_first.as_secs_f64() / ours_first.as_secs_f64()
            )
        },
        String::new(),
    );
    both(
        "HTTP requests per user",
        &|run| format!("{:.2}", run.requests_per_user),
        "1.00".to_owned(),
    );
    both(
        "second get_token (same credential)",
        &|run| us(run.second),
        format!("{:.0} ns", largest.existing.ns_per_call),
    );
    both(
        "  the cached token came back",
        &|run| format!("{}/{}", run.second_cached, run.users),
        "always".to_owned(),
    );
    both(
        "  ratio to our existing credential (100k)",
        &|run| format!("{:.0}x", run.second.as_secs_f64() / ours_hit),
        String::new(),
    );
    both(
        "  ratio to our credential_for + get_token",
        &|run| format!("{:.0}x", run.second.as_secs_f64() / ours_for_hit),
        String::new(),
    );
    println!(
        "  (a Python credential's cache dies with it: the same user's next request builds a new\n   credential and exchanges again; ours finds the user in the application's shared cache)"
    );
}
