//! `ClientAssertionCredential` side by side with `azure_identity`'s, against one in-process
//! emulator, in one run.
//!
//! `cargo bench -p entra-identity --bench credential`
//!
//! 1. cache hits: median ns per call (batch-timed, one thread), heap allocations per call,
//!    throughput on two threads against one;
//! 2. 1,000 concurrent callers on a cold key: token requests the emulator saw;
//! 3. 32 scopes at once with 20 ms added to every token request: wall time;
//! 4. a cached read while another scope is being fetched (300 ms added): its latency;
//! 5. a fresh credential's first token against a bare reqwest POST of the same form from a
//!    fresh client (both pay the TLS handshake).
//!
//! Both credentials get their assertion from the same pre-minted federated token, so the
//! assertion source costs nothing. Cache-hit futures are polled directly with a no-op waker
//! (both complete on the first poll), so no executor overhead is in the figures. Allocations
//! are counted per thread by `allocation-counter`, which is the global allocator of this
//! binary for both libraries alike.

#![allow(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential as _;
use azure_core::http::{ClientMethodOptions, ClientOptions, Transport};
use entra_emulator::{
    ApplicationConfig, Emulator, EmulatorConfig, Fault, FaultRule, FederatedCredentialConfig,
    TenantConfig,
};
use entra_identity::{CredentialError, HttpOptions, MapEnvironment};

const TENANT: &str = "bbbbbbbb-0000-0000-0000-00000000be7c";
const CLIENT_ID: &str = "b0000000-0000-0000-0000-000000000001";
const SUBJECT: &str = "system:serviceaccount:bench:workload";
const GRAPH: &[&str] = &["https://graph.microsoft.com/.default"];
const TOKEN_PATH: &str = "/oauth2/v2.0/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const HIT_BATCHES: usize = 41;
const HIT_BATCH_CALLS: u32 = 20_000;
const ALLOC_CALLS: u64 = 10_000;
const SCALING_REPEATS: usize = 5;
const SCALING_WINDOW: Duration = Duration::from_millis(400);
const COLD_CALLERS: usize = 1_000;
const SCOPES: usize = 32;
const FIRST_TOKEN_RUNS: usize = 30;

type Ours = entra_identity::ClientAssertionCredential;
type Theirs = Arc<azure_identity::ClientAssertionCredential<FederatedAssertion>>;

/// azure_identity's assertion source: the pre-minted federated token.
#[derive(Debug)]
struct FederatedAssertion(String);

#[async_trait::async_trait]
impl azure_identity::ClientAssertion for FederatedAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        Ok(self.0.clone())
    }
}

struct Bench {
    emulator: Emulator,
    assertion: String,
    /// The one reqwest client azure_identity credentials share, and ours too where a run wants
    /// a cold token cache over a warm connection pool (ours share a pool only with credentials
    /// of the same token cache).
    azure_http: reqwest::Client,
}

impl Bench {
    fn token_requests(&self) -> u64 {
        self.emulator.counters().token_requests
    }

    fn trusting_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.emulator.ca_pem().as_bytes()).expect("ca"),
            )
            .build()
            .expect("reqwest client")
    }

    fn ours_builder(&self, http: HttpOptions) -> entra_identity::ClientAssertionCredentialBuilder {
        let assertion = self.assertion.clone();
        Ours::builder(TENANT, CLIENT_ID, move || {
            let assertion = assertion.clone();
            async move { Ok::<_, std::io::Error>(assertion) }
        })
        .authority(self.emulator.url())
        .environment(Arc::new(MapEnvironment::new()))
        .http_options(http.trust_pem(self.emulator.ca_pem()))
    }

    /// Ours, with a token cache and a connection pool of its own.
    fn ours_with(&self, http: HttpOptions) -> Ours {
        self.ours_builder(http).build().expect("our credential")
    }

    fn ours(&self) -> Ours {
        self.ours_with(HttpOptions::default())
    }

    /// Ours, with a token cache of its own over the warm pool of the shared reqwest client.
    fn ours_on_warm_pool(&self) -> Ours {
        self.ours_builder(HttpOptions::default())
            .http_client(self.azure_http.clone())
            .build()
            .expect("our credential")
    }

    fn theirs_with(&self, http: reqwest::Client) -> azure_core::Result<Theirs> {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = self.emulator.url().to_owned();
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
            ..ClientOptions::default()
        };
        azure_identity::ClientAssertionCredential::new(
            TENANT.to_owned(),
            CLIENT_ID.to_owned(),
            FederatedAssertion(self.assertion.clone()),
            Some(azure_identity::ClientAssertionCredentialOptions { client_options }),
        )
    }

    fn theirs(&self) -> azure_core::Result<Theirs> {
        self.theirs_with(self.azure_http.clone())
    }
}

/// Our `get_token` (our trait; the credential also implements azure_core's).
fn ours_get<'a>(
    credential: &'a Ours,
    scopes: &'a [&'a str],
) -> impl Future<Output = Result<entra_identity::AccessToken, CredentialError>> + Send + 'a {
    entra_identity::TokenCredential::get_token(
        credential,
        scopes,
        entra_identity::TokenRequestOptions::new(),
    )
}

fn resource(index: usize) -> String {
    format!("api://r{index}/.default")
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

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn short(duration: Duration) -> String {
    if duration < Duration::from_millis(1) {
        format!("{:.1} us", duration.as_secs_f64() * 1e6)
    } else {
        ms(duration)
    }
}

fn ratio(theirs: f64, ours: f64) -> String {
    if ours > 0.0 {
        format!("{:.2}x", theirs / ours)
    } else {
        "-".to_owned()
    }
}

struct HitFigures {
    ns_per_call: f64,
    allocations_per_call: f64,
    bytes_per_call: f64,
    one_thread_per_sec: f64,
    two_threads_per_sec: f64,
}

impl HitFigures {
    fn scaling(&self) -> f64 {
        self.two_threads_per_sec / self.one_thread_per_sec
    }
}

/// Cache-hit figures of `call`, which must hit the cache.
fn measure_hits<F, Fut>(call: F) -> HitFigures
where
    F: Fn() -> Fut + Sync,
    Fut: Future,
{
    let call = &call;
    let batch = || {
        for _ in 0..HIT_BATCH_CALLS {
            std::hint::black_box(poll_now(call()));
        }
    };
    batch(); // warm-up, also creates this thread's lazily allocated state
    let mut per_call: Vec<f64> = (0..HIT_BATCHES)
        .map(|_| {
            let started = Instant::now();
            batch();
            started.elapsed().as_nanos() as f64 / f64::from(HIT_BATCH_CALLS)
        })
        .collect();
    let ns_per_call = median(&mut per_call);

    let allocations = allocation_counter::measure(|| {
        for _ in 0..ALLOC_CALLS {
            std::hint::black_box(poll_now(call()));
        }
    });

    let throughput = |threads: usize| {
        let mut rates: Vec<f64> = (0..SCALING_REPEATS)
            .map(|_| {
                let stop = AtomicBool::new(false);
                let stop = &stop;
                let calls: u64 = std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..threads)
                        .map(|_| {
                            scope.spawn(move || {
                                let mut calls = 0u64;
                                while !stop.load(Ordering::Relaxed) {
                                    for _ in 0..1_000 {
                                        std::hint::black_box(poll_now(call()));
                                    }
                                    calls += 1_000;
                                }
                                calls
                            })
                        })
                        .collect();
                    std::thread::sleep(SCALING_WINDOW);
                    stop.store(true, Ordering::Relaxed);
                    workers
                        .into_iter()
                        .map(|worker| worker.join().expect("worker"))
                        .sum()
                });
                calls as f64 / SCALING_WINDOW.as_secs_f64()
            })
            .collect();
        median(&mut rates)
    };

    HitFigures {
        ns_per_call,
        allocations_per_call: allocations.count_total as f64 / ALLOC_CALLS as f64,
        bytes_per_call: allocations.bytes_total as f64 / ALLOC_CALLS as f64,
        one_thread_per_sec: throughput(1),
        two_threads_per_sec: throughput(2),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bench = runtime.block_on(start());
    println!(
        "ClientAssertionCredential: entra-identity vs azure_identity, emulator at {}\n",
        bench.emulator.url()
    );

    // 1. Cache hits. The futures are polled on this (non-runtime) thread; the runtime's
    //    workers stay idle.
    let ours = bench.ours();
    let theirs = bench.theirs();
    runtime.block_on(async {
        ours_get(&ours, GRAPH).await.expect("our first token");
    });
    let ours_hits = measure_hits(|| ours_get(&ours, GRAPH));
    let future_bytes = size_of_val(&ours_get(&ours, GRAPH));
    let ours_via_azure_trait_hits =
        measure_hits(|| azure_core::credentials::TokenCredential::get_token(&ours, GRAPH, None));
    let theirs_hits = match &theirs {
        Ok(theirs) => match runtime.block_on(theirs.get_token(GRAPH, None)) {
            Ok(_) => Some(measure_hits(|| theirs.get_token(GRAPH, None))),
            Err(error) => {
                println!("azure_identity could not get a token: {error}");
                None
            }
        },
        Err(error) => {
            println!("azure_identity credential could not be built: {error}");
            None
        }
    };
    let theirs = theirs.ok();

    let (cold, fan_out, cached_read) = runtime.block_on(async {
        (
            cold_key(&bench, theirs.is_some()).await,
            many_scopes(&bench, theirs.is_some()).await,
            read_during_fetch(&bench, theirs.is_some()).await,
        )
    });
    let first = runtime.block_on(first_token(&bench, theirs.is_some()));

    print_hits(
        &ours_hits,
        &ours_via_azure_trait_hits,
        theirs_hits.as_ref(),
        future_bytes,
    );
    print_scenarios(&cold, &fan_out, &cached_read, &first);
    drop(ours);
    drop(theirs);
    drop(bench);
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn start() -> Bench {
    let mut applications = vec![ApplicationConfig {
        name: "workload".to_owned(),
        client_id: Some(CLIENT_ID.to_owned()),
        federated_credentials: vec![FederatedCredentialConfig {
            subject: SUBJECT.to_owned(),
            ..FederatedCredentialConfig::default()
        }],
        ..ApplicationConfig::default()
    }];
    applications.extend((0..SCOPES).map(|index| ApplicationConfig {
        name: format!("resource-{index}"),
        app_id_uri: Some(format!("api://r{index}")),
        ..ApplicationConfig::default()
    }));
    let config = EmulatorConfig {
        tenants: vec![TenantConfig {
            id: Some(TENANT.to_owned()),
            applications,
            ..TenantConfig::default()
        }],
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::builder()
        .config(config)
        .start()
        .await
        .expect("emulator starts");
    let assertion = emulator
        .mint_federated_token(SUBJECT, None, 3600)
        .expect("federated token");
    let azure_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(
            reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("reqwest client");
    Bench {
        emulator,
        assertion,
        azure_http,
    }
}

/// What one library did in a scenario.
#[derive(Default)]
struct Run {
    wall: Duration,
    token_requests: u64,
    failures: usize,
}

// 2. ------------------------------------------------------------------------------------------

const COLD_RUNS: usize = 5;

/// Every run with a fresh credential (a cold cache over a warm connection pool).
async fn cold_key(bench: &Bench, with_theirs: bool) -> (ColdRuns, Option<ColdRuns>) {
    let mut ours_runs = ColdRuns::default();
    let mut theirs_runs = ColdRuns::default();
    for _ in 0..COLD_RUNS {
        let ours = bench.ours_on_warm_pool();
        let polls = Arc::new(AtomicU64::new(0));
        let before = bench.token_requests();
        let started = Instant::now();
        let tasks: Vec<_> = (0..COLD_CALLERS)
            .map(|_| {
                let ours = ours.clone();
                let caller = async move { ours_get(&ours, GRAPH).await.is_ok() };
                tokio::spawn(Counted::new(caller, &polls))
            })
            .collect();
        let run = join_all(tasks, started, bench, before).await;
        ours_runs.push(run, polls.load(Ordering::Relaxed));

        if with_theirs {
            let theirs = bench.theirs().expect("azure_identity credential");
            let polls = Arc::new(AtomicU64::new(0));
            let before = bench.token_requests();
            let started = Instant::now();
            let tasks: Vec<_> = (0..COLD_CALLERS)
                .map(|_| {
                    let theirs = theirs.clone();
                    let caller = async move { theirs.get_token(GRAPH, None).await.is_ok() };
                    tokio::spawn(Counted::new(caller, &polls))
                })
                .collect();
            let run = join_all(tasks, started, bench, before).await;
            theirs_runs.push(run, polls.load(Ordering::Relaxed));
        }
    }
    (ours_runs, with_theirs.then_some(theirs_runs))
}

#[derive(Default)]
struct ColdRuns {
    token_requests: Vec<u64>,
    walls: Vec<Duration>,
    polls: Vec<u64>,
    failures: usize,
}

impl ColdRuns {
    fn push(&mut self, run: Run, polls: u64) {
        self.token_requests.push(run.token_requests);
        self.walls.push(run.wall);
        self.polls.push(polls);
        self.failures += run.failures;
    }

    fn requests(&self) -> String {
        let each: Vec<String> = self.token_requests.iter().map(u64::to_string).collect();
        each.join(",")
    }

    fn wall(&self) -> Duration {
        median(&mut self.walls.clone())
    }

    fn polls(&self) -> u64 {
        median(&mut self.polls.clone())
    }
}

/// Counts the polls of a future (every wake-up of a caller costs one).
struct Counted<F> {
    inner: std::pin::Pin<Box<F>>,
    polls: Arc<AtomicU64>,
}

impl<F> Counted<F> {
    fn new(inner: F, polls: &Arc<AtomicU64>) -> Self {
        Self {
            inner: Box::pin(inner),
            polls: polls.clone(),
        }
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<bool>>,
    started: Instant,
    bench: &Bench,
    before: u64,
) -> Run {
    let mut failures = 0;
    for task in tasks {
        if !task.await.unwrap_or(false) {
            failures += 1;
        }
    }
    Run {
        wall: started.elapsed(),
        token_requests: bench.token_requests() - before,
        failures,
    }
}

// 3. ------------------------------------------------------------------------------------------

async fn many_scopes(bench: &Bench, with_theirs: bool) -> (Run, Option<Run>) {
    let scopes: Arc<Vec<String>> = Arc::new((0..SCOPES).map(resource).collect());
    let delay = || {
        bench.emulator.inject_fault(FaultRule {
            path: TOKEN_PATH.to_owned(),
            count: SCOPES as u32,
            fault: Fault::Delay { millis: 20 },
        });
    };

    // A fresh cache; the pool already holds a connection, as azure_identity's will below.
    let ours = bench.ours_on_warm_pool();
    delay();
    let before = bench.token_requests();
    let started = Instant::now();
    let tasks: Vec<_> = (0..SCOPES)
        .map(|index| {
            let (ours, scopes) = (ours.clone(), scopes.clone());
            tokio::spawn(async move {
                let scope = [scopes[index].as_str()];
                ours_get(&ours, &scope).await.is_ok()
            })
        })
        .collect();
    let ours_run = join_all(tasks, started, bench, before).await;
    bench.emulator.clear_faults();

    let theirs_run = if with_theirs {
        let theirs = bench.theirs().expect("azure_identity credential");
        delay();
        let before = bench.token_requests();
        let started = Instant::now();
        let tasks: Vec<_> = (0..SCOPES)
            .map(|index| {
                let (theirs, scopes) = (theirs.clone(), scopes.clone());
                tokio::spawn(async move {
                    let scope = [scopes[index].as_str()];
                    theirs.get_token(&scope, None).await.is_ok()
                })
            })
            .collect();
        let run = join_all(tasks, started, bench, before).await;
        bench.emulator.clear_faults();
        Some(run)
    } else {
        None
    };
    (ours_run, theirs_run)
}

// 4. ------------------------------------------------------------------------------------------

const READ_RUNS: usize = 5;
const SLOW_FETCH: Duration = Duration::from_millis(300);

/// Medians of a cached read's latency with another scope's fetch in flight, and with none
/// (same sequence: a fresh credential, one token, a 30 ms pause, the read).
#[derive(Clone, Copy)]
struct CachedReads {
    during_fetch: Duration,
    idle: Duration,
}

async fn read_during_fetch(bench: &Bench, with_theirs: bool) -> (CachedReads, Option<CachedReads>) {
    let slow = || {
        bench.emulator.inject_fault(FaultRule {
            path: TOKEN_PATH.to_owned(),
            count: 1,
            fault: Fault::Delay {
                millis: SLOW_FETCH.as_millis() as u64,
            },
        });
    };
    let mut ours_reads = (Vec::new(), Vec::new());
    let mut theirs_reads = (Vec::new(), Vec::new());
    for run in 0..READ_RUNS {
        let other = [resource(run)];
        for with_fetch in [false, true] {
            let ours = bench.ours();
            ours_get(&ours, GRAPH).await.expect("our token");
            let fetching = with_fetch.then(|| {
                slow();
                let (ours, other) = (ours.clone(), other.clone());
                tokio::spawn(async move {
                    let scope = [other[0].as_str()];
                    ours_get(&ours, &scope).await.is_ok()
                })
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            let started = Instant::now();
            ours_get(&ours, GRAPH).await.expect("cached token");
            let elapsed = started.elapsed();
            if let Some(fetching) = fetching {
                ours_reads.1.push(elapsed);
                assert!(fetching.await.unwrap_or(false), "our slow fetch failed");
            } else {
                ours_reads.0.push(elapsed);
            }
            bench.emulator.clear_faults();

            if !with_theirs {
                continue;
            }
            let theirs = bench.theirs().expect("azure_identity credential");
            theirs.get_token(GRAPH, None).await.expect("their token");
            let fetching = with_fetch.then(|| {
                slow();
                let (theirs, other) = (theirs.clone(), other.clone());
                tokio::spawn(async move {
                    let scope = [other[0].as_str()];
                    theirs.get_token(&scope, None).await.is_ok()
                })
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            let started = Instant::now();
            theirs.get_token(GRAPH, None).await.expect("cached token");
            let elapsed = started.elapsed();
            if let Some(fetching) = fetching {
                theirs_reads.1.push(elapsed);
                assert!(fetching.await.unwrap_or(false), "their slow fetch failed");
            } else {
                theirs_reads.0.push(elapsed);
            }
            bench.emulator.clear_faults();
        }
    }
    let medians = |reads: &mut (Vec<Duration>, Vec<Duration>)| CachedReads {
        idle: median(&mut reads.0),
        during_fetch: median(&mut reads.1),
    };
    (
        medians(&mut ours_reads),
        with_theirs.then(|| medians(&mut theirs_reads)),
    )
}

// 5. ------------------------------------------------------------------------------------------

/// Medians of (construction + first token, first token alone).
#[derive(Clone, Copy, Default)]
struct First {
    total: Duration,
    request: Duration,
}

struct FirstTokens {
    bare: First,
    ours: First,
    theirs: Option<First>,
    bare_warm: Duration,
    ours_warm: Duration,
}

async fn bare_post(client: &reqwest::Client, url: &str, assertion: &str) -> serde_json::Value {
    let response = client
        .post(url)
        .form(&[
            ("client_assertion", assertion),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_id", CLIENT_ID),
            ("grant_type", "client_credentials"),
            ("scope", GRAPH[0]),
        ])
        .send()
        .await
        .expect("bare POST");
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.bytes().await.expect("body");
    serde_json::from_slice(&body).expect("JSON")
}

async fn first_token(bench: &Bench, with_theirs: bool) -> FirstTokens {
    let url = bench.emulator.token_endpoint(TENANT);
    let mut bare = Vec::new();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut bare_warm = Vec::new();
    let mut ours_warm = Vec::new();
    let warm_client = bench.trusting_client();
    bare_post(&warm_client, &url, &bench.assertion).await;
    for _ in 0..FIRST_TOKEN_RUNS {
        // Bare reqwest: a fresh client, so a new connection and TLS handshake.
        let started = Instant::now();
        let client = bench.trusting_client();
        let sent = Instant::now();
        std::hint::black_box(bare_post(&client, &url, &bench.assertion).await);
        bare.push(First {
            total: started.elapsed(),
            request: sent.elapsed(),
        });
        drop(client);

        // Ours: a cache and so a pool of its own (credentials share a pool only with the
        // same cache and options), and a new connection.
        let started = Instant::now();
        let credential = bench.ours();
        let sent = Instant::now();
        std::hint::black_box(ours_get(&credential, GRAPH).await.expect("first token"));
        ours.push(First {
            total: started.elapsed(),
            request: sent.elapsed(),
        });
        drop(credential);

        if with_theirs {
            let started = Instant::now();
            let credential = bench
                .theirs_with(bench.trusting_client())
                .expect("azure_identity credential");
            let sent = Instant::now();
            std::hint::black_box(credential.get_token(GRAPH, None).await.expect("token"));
            theirs.push(First {
                total: started.elapsed(),
                request: sent.elapsed(),
            });
        }

        // Warm connections: the same form over a pooled connection; a new credential (cold
        // cache) on the shared, warm pool.
        let started = Instant::now();
        std::hint::black_box(bare_post(&warm_client, &url, &bench.assertion).await);
        bare_warm.push(started.elapsed());
        let credential = bench.ours_on_warm_pool();
        let started = Instant::now();
        std::hint::black_box(ours_get(&credential, GRAPH).await.expect("token"));
        ours_warm.push(started.elapsed());
    }
    let medians = |runs: &[First]| First {
        total: median(&mut runs.iter().map(|run| run.total).collect::<Vec<_>>()),
        request: median(&mut runs.iter().map(|run| run.request).collect::<Vec<_>>()),
    };
    FirstTokens {
        bare: medians(&bare),
        ours: medians(&ours),
        theirs: with_theirs.then(|| medians(&theirs)),
        bare_warm: median(&mut bare_warm),
        ours_warm: median(&mut ours_warm),
    }
}

// Output ---------------------------------------------------------------------------------------

fn row(metric: &str, ours: &str, theirs: &str, ratio: &str) {
    println!("  {metric:<44} {ours:>16} {theirs:>16} {ratio:>10}");
}

fn header(title: &str) {
    println!("{title}");
    row("", "entra-identity", "azure_identity", "az/ours");
}

fn print_hits(
    ours: &HitFigures,
    ours_via_azure_trait: &HitFigures,
    theirs: Option<&HitFigures>,
    future_bytes: usize,
) {
    let na = || "n/a".to_owned();
    header("1. cache-hit get_token (one scope, warm cache)");
    let show = |metric: &str, pick: &dyn Fn(&HitFigures) -> f64, fmt: &dyn Fn(f64) -> String| {
        let mine = pick(ours);
        let (theirs_text, ratio_text) = theirs.map_or_else(
            || (na(), na()),
            |theirs| (fmt(pick(theirs)), ratio(pick(theirs), mine)),
        );
        row(metric, &fmt(mine), &theirs_text, &ratio_text);
    };
    show("median ns/call, 1 thread", &|f| f.ns_per_call, &|v| {
        format!("{v:.1} ns")
    });
    show(
        "heap allocations per call",
        &|f| f.allocations_per_call,
        &|v| format!("{v:.2}"),
    );
    show("heap bytes per call", &|f| f.bytes_per_call, &|v| {
        format!("{v:.1} B")
    });
    show("calls/s, 1 thread", &|f| f.one_thread_per_sec, &|v| {
        format!("{:.2} M", v / 1e6)
    });
    show("calls/s, 2 threads", &|f| f.two_threads_per_sec, &|v| {
        format!("{:.2} M", v / 1e6)
    });
    show("scaling, 2 threads / 1", &HitFigures::scaling, &|v| {
        format!("{v:.2}x")
    });
    row("ours via azure_core's TokenCredential:", "", "", "");
    row(
        "  median ns/call | allocations/call",
        &format!("{:.1} ns", ours_via_azure_trait.ns_per_call),
        &format!("{:.2}", ours_via_azure_trait.allocations_per_call),
        "",
    );
    row(
        "size of our get_token future (bytes)",
        &future_bytes.to_string(),
        "boxed",
        "",
    );
    println!();
}

fn print_scenarios(
    cold: &(ColdRuns, Option<ColdRuns>),
    fan_out: &(Run, Option<Run>),
    cached_read: &(CachedReads, Option<CachedReads>),
    first: &FirstTokens,
) {
    let na = || "n/a".to_owned();
    header(&format!(
        "2. {COLD_CALLERS} concurrent callers (tokio tasks), cold key"
    ));
    let (ours, theirs) = cold;
    row(
        &format!("token requests the emulator saw ({COLD_RUNS} runs)"),
        &ours.requests(),
        &theirs.as_ref().map_or_else(na, ColdRuns::requests),
        "",
    );
    row(
        "median wall time until every caller has a token",
        &ms(ours.wall()),
        &theirs.as_ref().map_or_else(na, |runs| ms(runs.wall())),
        &theirs.as_ref().map_or_else(na, |runs| {
            ratio(runs.wall().as_secs_f64(), ours.wall().as_secs_f64())
        }),
    );
    row(
        "median polls of the 1000 caller futures",
        &ours.polls().to_string(),
        &theirs
            .as_ref()
            .map_or_else(na, |runs| runs.polls().to_string()),
        &theirs
            .as_ref()
            .map_or_else(na, |runs| ratio(runs.polls() as f64, ours.polls() as f64)),
    );
    row(
        "failed callers",
        &ours.failures.to_string(),
        &theirs
            .as_ref()
            .map_or_else(na, |runs| runs.failures.to_string()),
        "",
    );
    println!();

    header(&format!(
        "3. {SCOPES} scopes at once, +20 ms on every token request"
    ));
    let (ours, theirs) = fan_out;
    row(
        "wall time",
        &ms(ours.wall),
        &theirs.as_ref().map_or_else(na, |run| ms(run.wall)),
        &theirs.as_ref().map_or_else(na, |run| {
            ratio(run.wall.as_secs_f64(), ours.wall.as_secs_f64())
        }),
    );
    row(
        "token requests",
        &ours.token_requests.to_string(),
        &theirs
            .as_ref()
            .map_or_else(na, |run| run.token_requests.to_string()),
        "",
    );
    row(
        "failed scopes",
        &ours.failures.to_string(),
        &theirs
            .as_ref()
            .map_or_else(na, |run| run.failures.to_string()),
        "",
    );
    println!();

    header(&format!(
        "4. cached read while another scope's fetch takes +{} ms (median of {READ_RUNS})",
        SLOW_FETCH.as_millis()
    ));
    let (ours, theirs) = cached_read;
    let line = |metric: &str, pick: fn(&CachedReads) -> Duration| {
        row(
            metric,
            &short(pick(ours)),
            &theirs.map_or_else(na, |reads| short(pick(&reads))),
            &theirs.map_or_else(na, |reads| {
                ratio(pick(&reads).as_secs_f64(), pick(ours).as_secs_f64())
            }),
        );
    };
    line("cached get_token, another fetch in flight", |r| {
        r.during_fetch
    });
    line("cached get_token, nothing in flight", |r| r.idle);
    println!();

    println!(
        "5. first token, fresh credential vs bare reqwest POST of the same form (median of {FIRST_TOKEN_RUNS})"
    );
    row("", "time", "vs bare POST", "");
    let line = |metric: &str, value: Duration, bare: Duration| {
        row(
            metric,
            &ms(value),
            &ratio(value.as_secs_f64(), bare.as_secs_f64()),
            "",
        );
    };
    row("new client/credential + first token:", "", "", "");
    line(
        "  bare reqwest (fresh client, TLS handshake)",
        first.bare.total,
        first.bare.total,
    );
    line(
        "  entra-identity (fresh pool, TLS handshake)",
        first.ours.total,
        first.bare.total,
    );
    if let Some(theirs) = first.theirs {
        line(
            "  azure_identity (fresh client)",
            theirs.total,
            first.bare.total,
        );
    }
    row(
        "the first request alone (construction excluded):",
        "",
        "",
        "",
    );
    line("  bare reqwest", first.bare.request, first.bare.request);
    line("  entra-identity", first.ours.request, first.bare.request);
    if let Some(theirs) = first.theirs {
        line("  azure_identity", theirs.request, first.bare.request);
    }
    row("over a warm pooled connection:", "", "", "");
    line("  bare reqwest", first.bare_warm, first.bare_warm);
    line(
        "  entra-identity (new credential, shared pool)",
        first.ours_warm,
        first.bare_warm,
    );
}
