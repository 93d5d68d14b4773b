//! An interleaving explorer for the memory cache's single-flight and eviction, with shuttle.
//!
//! Built only with `--cfg shuttle` (`scripts/test` has a step for it): the cache's locks and
//! atomics are then shuttle's (see `sync.rs`), so every lock acquisition and every atomic
//! access is a point where shuttle's scheduler chooses which task runs next. Each scenario is a
//! small async program of callers, an evictor and a checker; it runs under shuttle's random
//! scheduler and under its PCT scheduler (which bounds the number of preemptions and finds
//! shallow bugs with a known probability), [`DEFAULT_SCHEDULES`] schedules each unless
//! `EXPLORE_SCHEDULES` says otherwise. The program's own choices (delays, sizes, when a caller
//! gives up) come from shuttle's random source, so a failing schedule printed by shuttle replays
//! exactly with `shuttle::replay`.
//!
//! Checked in every schedule:
//! - **single-flight**: a token request for a key (user and scopes) runs only while no other
//!   request for that key runs, and a plain (not a refresh) request is made only when the
//!   cache holds no token for the key: one request per key per generation, whatever is evicted
//!   or cancelled meanwhile;
//! - **counters**: wherever the checker task is scheduled, the entries and bytes the cache
//!   counts equal the sums over its live entries and are within the limits (the documented
//!   slack is none), and so are the published counters;
//! - **nothing left behind**: once every task has ended, callers and refreshes that gave up
//!   included, no request is in flight, and a new caller is served;
//! - **isolation**: every token a caller gets, and every refresh token a request is handed,
//!   is its own user's (and a token is for the scopes asked or more).
//!
//! Each run prints how many of its schedules went through the interleavings that matter (a
//! second generation of a key, a caller joining a request, every caller giving up, a refresh
//! answering after its token was evicted...), so that a scenario that stops reaching them shows.
//!
//! Not explored: the credential hints' lookups (`lookup_hinted`), and the internal atomics of
//! arc-swap and of `futures_util`'s `Shared` and the published counters (std atomics), each of
//! whose operations is one step for shuttle.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::{Future, poll_fn};
use std::ops::Range;
use std::pin::pin;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard, OnceLock, PoisonError};
use std::task::Poll;

use shuttle::future::{JoinHandle, block_on, spawn, yield_now};
use shuttle::rand::{Rng, thread_rng};
use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
use shuttle::{Config, MaxSteps, Runner};

use super::memory::{
    Cached, ENTRY_OVERHEAD_BYTES, FetchFuture, FetchMode, Fetched, PartitionKeyRef, SortedScopes,
    TokenCache,
};
use crate::secret::{AccessTokenSecret, RefreshToken};
use crate::token::AccessTokenInfo;

/// Schedules per scenario and scheduler, unless `EXPLORE_SCHEDULES` says otherwise.
const DEFAULT_SCHEDULES: usize = 1_000;
/// The preemptions PCT places per schedule (its bug depth).
const PCT_DEPTH: usize = 3;
/// The time every caller asks at: no token expires during a schedule.
const NOW: i64 = 1_000_000;
const USERS: u8 = 5;
const USER_KEYS: [[u8; 32]; USERS as usize] = [[1; 32], [2; 32], [3; 32], [4; 32], [5; 32]];
/// `{a}`, and `{a, b}`, whose token also serves `{a}`.
const SCOPE_SETS: [&[&str]; 2] = [&["a"], &["a", "b"]];
/// Small limits, so that a few users evict each other by count and by bytes.
const CAPACITY: usize = 3;
const MAX_BYTES: usize = 3 * ENTRY_OVERHEAD_BYTES + 400;
/// Tokens are padded by up to this many bytes.
const MAX_PADDING: usize = 200;

fn app() -> &'static Arc<str> {
    static APP: OnceLock<Arc<str>> = OnceLock::new();
    APP.get_or_init(|| Arc::from("https://login|client"))
}

fn key(user: u8) -> PartitionKeyRef<'static> {
    PartitionKeyRef {
        app: app(),
        tenant: "t",
        user: Some(&USER_KEYS[usize::from(user)]),
        cae: false,
    }
}

fn scope_set(index: u8) -> SortedScopes<'static> {
    SortedScopes::new(SCOPE_SETS[usize::from(index)])
}

fn refresh_secret(user: u8) -> String {
    format!("refresh-u{user}")
}

/// Asserts that `token` is `user`'s and serves `scopes`.
fn assert_owned(token: &str, user: u8, scopes: u8) {
    let mut parts = token.split(':');
    let owner = parts.next().and_then(|owner| owner.strip_prefix('u'));
    assert_eq!(
        owner,
        Some(user.to_string().as_str()),
        "user {user} got another user's token: {token}"
    );
    let held: Option<u8> = parts
        .next()
        .and_then(|held| held.strip_prefix('s'))
        .and_then(|held| held.parse().ok());
    assert!(
        held == Some(scopes) || held == Some(1),
        "user {user} asked for scope set {scopes} and got {token}"
    );
}

/// What the fetchers saw: the requests running and started, by key.
#[derive(Default)]
struct Ledger {
    running: HashSet<(u8, u8)>,
    started: HashMap<(u8, u8), usize>,
    /// Callers that took the slow path, by key.
    slow: HashMap<(u8, u8), usize>,
    /// Callers told to refresh a token.
    refreshes_due: usize,
    /// Callers and background refreshes that gave up.
    gave_up: usize,
    refreshes_given_up: usize,
    /// Refreshes that answered after their token had been evicted.
    landed_after_eviction: usize,
}

std::thread_local! {
    /// What the schedules of the scenario running on this thread went through (shuttle runs
    /// them on the thread that runs the test), printed to show which interleavings were met.
    static SEEN: RefCell<BTreeMap<&'static str, usize>> = RefCell::default();
}

/// Counts a schedule that went through `what`.
fn saw(what: &'static str) {
    SEEN.with(|seen| *seen.borrow_mut().entry(what).or_default() += 1);
}

/// One schedule's cache, and what is known about it.
struct World {
    cache: TokenCache,
    ledger: StdMutex<Ledger>,
    /// The background refreshes callers started, awaited at the end.
    background: StdMutex<Vec<JoinHandle<()>>>,
    /// The scheduling points a request takes (the network), drawn from this range.
    delay: Range<usize>,
}

impl World {
    fn new(capacity: usize, max_bytes: usize) -> Arc<Self> {
        Self::with_delay(capacity, max_bytes, 0..4)
    }

    fn with_delay(capacity: usize, max_bytes: usize, delay: Range<usize>) -> Arc<Self> {
        Arc::new(Self {
            cache: TokenCache::with_limits(capacity, max_bytes),
            ledger: StdMutex::default(),
            background: StdMutex::default(),
            delay,
        })
    }

    /// The ledger (never held across a scheduling point, and usable after a panic).
    fn ledger(&self) -> StdMutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn started(&self, user: u8, scopes: u8) -> usize {
        self.ledger()
            .started
            .get(&(user, scopes))
            .copied()
            .unwrap_or(0)
    }
}

/// A request running: from its first poll until it completes or is dropped.
struct Running {
    world: Arc<World>,
    key: (u8, u8),
}

impl Running {
    fn start(world: &Arc<World>, user: u8, scopes: u8) -> Self {
        let alone = {
            let mut ledger = world.ledger();
            *ledger.started.entry((user, scopes)).or_default() += 1;
            ledger.running.insert((user, scopes))
        };
        assert!(
            alone,
            "single-flight broken: a second request for user {user}, scope set {scopes} runs \
             while the first has not finished"
        );
        Self {
            world: world.clone(),
            key: (user, scopes),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.world.ledger().running.remove(&self.key);
    }
}

/// A token request as the cache gets it: it checks what it is handed and when it is made,
/// then takes a few scheduling points (the network) before answering with a token of the
/// user's, of a random size, valid for `lifetime` seconds.
fn fetcher(
    world: &Arc<World>,
    user: u8,
    scopes: u8,
    mode: FetchMode,
    lifetime: i64,
) -> impl FnOnce(Option<RefreshToken>) -> FetchFuture + Send + 'static {
    let world = world.clone();
    let delay = thread_rng().gen_range(world.delay.clone());
    let padding = thread_rng().gen_range(0..=MAX_PADDING);
    move |refresh_token| {
        if let Some(refresh_token) = &refresh_token {
            assert_eq!(
                refresh_token.expose_secret(),
                refresh_secret(user),
                "a request for user {user} was handed another user's refresh token"
            );
        }
        // Made under the cache's in-flight lock, after it found no token for the key.
        if mode == FetchMode::Normal {
            let cached = world.cache.peek(&key(user), &scope_set(scopes));
            assert!(
                cached.is_none(),
                "single-flight broken: a second request for user {user}, scope set {scopes} \
                 while its token is cached"
            );
        }
        Box::pin(async move {
            let _running = Running::start(&world, user, scopes);
            for _ in 0..delay {
                yield_now().await;
            }
            if mode == FetchMode::Refresh
                && world.cache.peek(&key(user), &scope_set(scopes)).is_none()
            {
                world.ledger().landed_after_eviction += 1;
            }
            let token = format!("u{user}:s{scopes}:{}", "x".repeat(padding));
            Ok(Fetched {
                info: AccessTokenInfo {
                    token: AccessTokenSecret::new(token),
                    expires_on: NOW + lifetime,
                    token_type: "Bearer".into(),
                    refresh_on: None,
                },
                refresh_token: Some(RefreshToken::new(refresh_secret(user))),
            })
        })
    }
}

/// A caller as a credential is one: the map first; a token due for refresh is served and
/// refreshed in the background; else the slow path. Returns the token it got.
async fn caller(world: Arc<World>, user: u8, scopes: u8) -> String {
    let key = key(user);
    let sorted = scope_set(scopes);
    let info = match world.cache.lookup(&key, &sorted, NOW) {
        Some(Cached::Fresh(info)) => info,
        Some(Cached::RefreshDue(info)) => {
            refresh_in_background(&world, user, scopes);
            info
        }
        None => {
            *world.ledger().slow.entry((user, scopes)).or_default() += 1;
            let fetch = fetcher(&world, user, scopes, FetchMode::Normal, 3600);
            world
                .cache
                .get_or_fetch(&key, &sorted, NOW, FetchMode::Normal, fetch)
                .await
                .expect("the fetchers never fail")
        }
    };
    let token = info.token.expose_secret().to_owned();
    assert_owned(&token, user, scopes);
    token
}

/// Starts a proactive refresh as a task, which may give up (as on its deadline) before it ends.
fn refresh_in_background(world: &Arc<World>, user: u8, scopes: u8) {
    world.ledger().refreshes_due += 1;
    let patience = thread_rng()
        .gen_bool(0.5)
        .then(|| thread_rng().gen_range(1..4));
    let task = spawn({
        let world = world.clone();
        async move {
            let fetch = fetcher(&world, user, scopes, FetchMode::Refresh, 3600);
            let (key, sorted) = (key(user), scope_set(scopes));
            let refresh = world
                .cache
                .get_or_fetch(&key, &sorted, NOW, FetchMode::Refresh, fetch);
            let refreshed = match patience {
                Some(polls) => give_up_after(refresh, polls).await,
                None => Some(refresh.await),
            };
            match refreshed {
                Some(refreshed) => {
                    let token = refreshed.expect("the fetchers never fail");
                    assert_owned(token.token.expose_secret(), user, scopes);
                }
                None => world.ledger().refreshes_given_up += 1,
            }
        }
    });
    world
        .background
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(task);
}

/// Polls `future` at most `polls` times, letting the others run between polls, then drops it
/// (a caller that gives up, or is cancelled). `None` when it gave up.
async fn give_up_after<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    for _ in 0..polls {
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
            return Some(output);
        }
        yield_now().await;
    }
    None
}

/// Lets the others run a random number of steps: callers arrive at different times.
async fn stagger() {
    for _ in 0..thread_rng().gen_range(0..6) {
        yield_now().await;
    }
}

/// Other users, one after the other: each store pushes older partitions out.
async fn evictor(world: Arc<World>, users: Range<u8>) {
    for user in users {
        caller(world.clone(), user, 0).await;
    }
}

/// Checks the counters whenever it is scheduled, `rounds` times: the published ones as a
/// reader sees them, without a lock (so also while a store holds the books), and the books
/// against the live entries.
async fn checker(world: Arc<World>, rounds: usize) {
    let published = || {
        let (len, bytes) = (world.cache.len(), world.cache.bytes());
        assert!(
            len <= world.cache.capacity() && bytes <= world.cache.max_bytes(),
            "published counters beyond the limits: {len} entries, {bytes} bytes"
        );
    };
    for _ in 0..rounds {
        published();
        if let Err(broken) = world.cache.check_invariants() {
            panic!("the cache's books are wrong: {broken}");
        }
        published();
        yield_now().await;
    }
}

/// Awaits the tasks, then the background refreshes, and checks that nothing is left behind
/// and that a new caller is served.
async fn finish(world: &Arc<World>, tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        task.await.expect("task");
    }
    let background = std::mem::take(
        &mut *world
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    for task in background {
        task.await.expect("background refresh");
    }
    assert_eq!(
        world.cache.in_flight(),
        0,
        "a request was left in the in-flight map"
    );
    assert!(world.ledger().running.is_empty(), "a request still runs");
    if let Err(broken) = world.cache.check_invariants() {
        panic!("the cache's books are wrong at the end: {broken}");
    }
    note(world);
    caller(world.clone(), 0, 0).await;
    assert_eq!(
        world.cache.in_flight(),
        0,
        "the last caller's request stayed"
    );
}

/// Counts what this schedule went through.
fn note(world: &World) {
    let ledger = world.ledger();
    let started = ledger.started.get(&(0, 0)).copied().unwrap_or(0);
    let slow = ledger.slow.get(&(0, 0)).copied().unwrap_or(0);
    if started >= 2 {
        saw("user 0 {a}: a second generation (evicted or abandoned, then fetched again)");
    }
    if slow > started {
        saw("user 0 {a}: a slow-path caller joined a request or found its token");
    }
    if world.cache.peek(&key(0), &scope_set(0)).is_none() {
        saw("user 0 {a}: no token of its own at the end (evicted, abandoned, or {a, b} served)");
    }
    if ledger.gave_up > 0 {
        saw("a caller gave up mid-wait");
    }
    if ledger.gave_up == 3 {
        saw("every caller gave up");
    }
    if ledger.refreshes_due > 0 {
        saw("a caller was told to refresh");
    }
    if ledger.refreshes_given_up > 0 {
        saw("a background refresh gave up");
    }
    if ledger.landed_after_eviction > 0 {
        saw("a refresh answered after its token was evicted");
    }
}

fn spawn_caller(world: &Arc<World>, user: u8, scopes: u8) -> JoinHandle<()> {
    let world = world.clone();
    spawn(async move {
        stagger().await;
        caller(world, user, scopes).await;
    })
}

// The scenarios --------------------------------------------------------------------------------

/// Callers of two users and two scope sets at once, nothing evicted: exactly one request per
/// key that no other token serves, at most one for `{a}` of user 0 (which `{a, b}` serves).
fn single_flight() {
    block_on(async {
        let world = World::new(100, 1 << 20);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(spawn_caller(&world, 0, 0));
        }
        tasks.push(spawn_caller(&world, 0, 1));
        tasks.push(spawn_caller(&world, 1, 0));
        tasks.push(spawn_caller(&world, 1, 0));
        tasks.push(spawn(checker(world.clone(), 4)));
        finish(&world, tasks).await;
        assert!(world.started(0, 0) <= 1, "user 0, {{a}}: several requests");
        assert_eq!(world.started(0, 1), 1, "user 0, {{a, b}}");
        assert_eq!(world.started(1, 0), 1, "user 1, {{a}}");
    });
}

/// As [`single_flight`], while other users evict everyone by count and by bytes.
fn single_flight_under_eviction() {
    block_on(async {
        let world = World::new(CAPACITY, MAX_BYTES);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(spawn_caller(&world, 0, 0));
        }
        tasks.push(spawn_caller(&world, 0, 1));
        tasks.push(spawn_caller(&world, 1, 0));
        tasks.push(spawn(evictor(world.clone(), 2..USERS)));
        tasks.push(spawn(checker(world.clone(), 6)));
        finish(&world, tasks).await;
    });
}

/// Callers of one key give up mid-wait (the one whose request it is among them, sometimes
/// all of them) while others evict: nothing may stay in flight, the others are served.
fn cancelled_callers() {
    block_on(async {
        // Slower requests: callers give up while they wait.
        let world = World::with_delay(CAPACITY, MAX_BYTES, 2..6);
        let mut tasks = Vec::new();
        for index in 0..3 {
            // The first always gives up; the others half the time.
            let gives_up = index == 0 || thread_rng().gen_bool(0.5);
            let polls = thread_rng().gen_range(1..5);
            let world = world.clone();
            tasks.push(spawn(async move {
                stagger().await;
                let call = caller(world.clone(), 0, 0);
                if gives_up {
                    if give_up_after(call, polls).await.is_none() {
                        world.ledger().gave_up += 1;
                    }
                } else {
                    call.await;
                }
            }));
        }
        tasks.push(spawn(evictor(world.clone(), 2..USERS)));
        tasks.push(spawn(checker(world.clone(), 6)));
        finish(&world, tasks).await;
    });
}

/// A token due for refresh: one caller is told to refresh it in the background (a refresh that
/// may give up), the others are served it, while others evict it and callers that then miss
/// join the refresh or start the next generation.
fn refresh_under_eviction() {
    block_on(async {
        let world = World::new(CAPACITY, MAX_BYTES);
        // 100 s left: inside the refresh window.
        let fetch = fetcher(&world, 0, 0, FetchMode::Normal, 100);
        world
            .cache
            .get_or_fetch(&key(0), &scope_set(0), NOW, FetchMode::Normal, fetch)
            .await
            .expect("first token");
        world.ledger().started.clear();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(spawn_caller(&world, 0, 0));
        }
        tasks.push(spawn(evictor(world.clone(), 2..USERS)));
        tasks.push(spawn(checker(world.clone(), 6)));
        finish(&world, tasks).await;
        assert!(
            world.ledger().refreshes_due <= 1,
            "more than one caller was told to refresh within the retry delay"
        );
    });
}

// Running them ----------------------------------------------------------------------------------

fn schedules() -> usize {
    std::env::var("EXPLORE_SCHEDULES")
        .ok()
        .and_then(|schedules| schedules.parse().ok())
        .unwrap_or(DEFAULT_SCHEDULES)
}

fn config() -> Config {
    let mut config = Config::new();
    // The cache's relaxed atomics are explored as sequentially consistent: said once, here.
    config.silence_warnings = true;
    // Every scenario ends in far fewer steps: more is a livelock.
    config.max_steps = MaxSteps::FailAfter(100_000);
    config
}

fn explore(scenario: fn(), scheduler: impl Scheduler + 'static, name: &str) {
    SEEN.with(|seen| seen.borrow_mut().clear());
    let started = std::time::Instant::now();
    let ran = Runner::new(scheduler, config()).run(scenario);
    let seen = SEEN.with(|seen| std::mem::take(&mut *seen.borrow_mut()));
    let seen: Vec<String> = seen
        .into_iter()
        .map(|(what, schedules)| format!("\n  {schedules:>5} {what}"))
        .collect();
    println!(
        "{name}: {ran} schedules explored in {:.1?}; schedules in which:{}",
        started.elapsed(),
        seen.concat()
    );
    assert!(ran > 0, "no schedule ran");
}

fn random(scenario: fn(), name: &str) {
    explore(scenario, RandomScheduler::new(schedules()), name);
}

fn pct(scenario: fn(), name: &str) {
    explore(scenario, PctScheduler::new(PCT_DEPTH, schedules()), name);
}

#[test]
fn single_flight_random() {
    random(single_flight, "single_flight, random");
}

#[test]
fn single_flight_pct() {
    pct(single_flight, "single_flight, PCT");
}

#[test]
fn single_flight_under_eviction_random() {
    random(
        single_flight_under_eviction,
        "single_flight_under_eviction, random",
    );
}

#[test]
fn single_flight_under_eviction_pct() {
    pct(
        single_flight_under_eviction,
        "single_flight_under_eviction, PCT",
    );
}

#[test]
fn cancelled_callers_random() {
    random(cancelled_callers, "cancelled_callers, random");
}

#[test]
fn cancelled_callers_pct() {
    pct(cancelled_callers, "cancelled_callers, PCT");
}

#[test]
fn refresh_under_eviction_random() {
    random(refresh_under_eviction, "refresh_under_eviction, random");
}

#[test]
fn refresh_under_eviction_pct() {
    pct(refresh_under_eviction, "refresh_under_eviction, PCT");
}
