//! A model-based test of the token cache: random sequences of requests, lookups, answers,
//! failures, cancellations, claims challenges, closed credentials and clock steps, run
//! against the cache and against a trivial reference model (vectors and a use counter), with
//! every invariant checked after every step.

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt as _;
use proptest::prelude::*;

use super::*;

const USERS: u8 = 4;
/// The scope sets requests ask for: `{a}`, `{b}` and `{a, b}` (which serves the other two).
const SCOPE_SETS: [&[&str]; 3] = [&["a"], &["b"], &["a", "b"]];
const CAPACITY: usize = 4;
const MAX_BYTES: usize = 3 * (ENTRY_OVERHEAD_BYTES + 400);

#[derive(Clone, Debug)]
enum Op {
    /// A caller on the slow path: served from the cache, joins the request in flight, or
    /// starts one.
    Get { user: u8, scopes: u8 },
    /// A lookup on the fast path, through the map.
    Lookup { user: u8, scopes: u8 },
    /// A lookup through the user's credential's hint.
    Hinted { user: u8, scopes: u8 },
    /// The request in flight for the nth key answers.
    Complete {
        flight: u8,
        size: u16,
        lifetime: u16,
        refresh_token: bool,
    },
    /// The request in flight for the nth key fails.
    Fail { flight: u8 },
    /// The nth waiting caller gives up (its future is dropped).
    Cancel { waiter: u8 },
    /// A claims challenge: fetched at once, stored.
    Bypass {
        user: u8,
        scopes: u8,
        size: u16,
        lifetime: u16,
    },
    /// The user's credential is closed (dropped): its hints go.
    Close { user: u8 },
    /// Time passes.
    Advance { secs: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let scopes = 0..3u8;
    prop_oneof![
        4 => (user.clone(), scopes.clone()).prop_map(|(user, scopes)| Op::Get { user, scopes }),
        3 => (user.clone(), scopes.clone()).prop_map(|(user, scopes)| Op::Lookup { user, scopes }),
        2 => (user.clone(), scopes.clone()).prop_map(|(user, scopes)| Op::Hinted { user, scopes }),
        4 => (any::<u8>(), 0..500u16, 1..4000u16, any::<bool>()).prop_map(
            |(flight, size, lifetime, refresh_token)| Op::Complete { flight, size, lifetime, refresh_token }
        ),
        1 => any::<u8>().prop_map(|flight| Op::Fail { flight }),
        1 => any::<u8>().prop_map(|waiter| Op::Cancel { waiter }),
        1 => (user.clone(), scopes, 0..500u16, 1..4000u16).prop_map(
            |(user, scopes, size, lifetime)| Op::Bypass { user, scopes, size, lifetime }
        ),
        1 => user.prop_map(|user| Op::Close { user }),
        2 => (0..400u16).prop_map(|secs| Op::Advance { secs }),
    ]
}

fn app() -> &'static Arc<str> {
    static APP: OnceLock<Arc<str>> = OnceLock::new();
    APP.get_or_init(|| Arc::from("https://login|client"))
}

const USER_KEYS: [[u8; 32]; USERS as usize] = [[1; 32], [2; 32], [3; 32], [4; 32]];

fn key(user: u8) -> PartitionKeyRef<'static> {
    PartitionKeyRef {
        app: app(),
        tenant: "t",
        user: Some(&USER_KEYS[usize::from(user)]),
        cae: false,
    }
}

fn scopes(index: u8) -> SortedScopes<'static> {
    SortedScopes::new(SCOPE_SETS[usize::from(index)])
}

/// Whether scope set `wanted` is served by a token for `held`.
fn subset(wanted: u8, held: u8) -> bool {
    wanted == held || held == 2
}

/// What a lookup answered: the token and whether the caller must refresh it.
type Answer = Option<(String, bool)>;

fn answer(cached: Option<Cached>) -> Answer {
    cached.map(|cached| match cached {
        Cached::Fresh(info) => (info.token.expose_secret().to_owned(), false),
        Cached::RefreshDue(info) => (info.token.expose_secret().to_owned(), true),
    })
}

// The model ----------------------------------------------------------------------------------

struct MSlot {
    scopes: u8,
    token: String,
    expires_on: i64,
    last_attempt: i64,
    stamp: u64,
}

#[derive(Default)]
struct MPartition {
    slots: Vec<MSlot>,
    refresh_token: Option<String>,
}

struct MFlight {
    waiters: usize,
    started: i64,
}

#[derive(Default)]
struct Model {
    partitions: BTreeMap<u8, MPartition>,
    uses: u64,
    len: usize,
    bytes: usize,
    now: i64,
    flights: BTreeMap<(u8, u8), MFlight>,
    fetches: usize,
}

impl Model {
    /// A hit: stamps the slot unless it is the most recent already.
    fn touch(uses: &mut u64, slot: &mut MSlot) {
        if slot.stamp != *uses {
            Self::stamp(uses, slot);
        }
    }

    /// A store: stamps the slot.
    fn stamp(uses: &mut u64, slot: &mut MSlot) {
        *uses += 1;
        slot.stamp = *uses;
    }

    /// A slot's answer, as `CacheInner::serve`.
    fn serve(&mut self, user: u8, index: usize, claim: bool) -> Answer {
        let now = self.now;
        let slot = &mut self.partitions.get_mut(&user)?.slots[index];
        if now >= slot.expires_on {
            return None;
        }
        let recommended = now.saturating_sub(slot.last_attempt) >= REFRESH_RETRY_DELAY_SECS
            && slot.expires_on - now <= REFRESH_WINDOW_SECS;
        if recommended && !claim {
            return None;
        }
        if recommended {
            slot.last_attempt = now;
        }
        Self::touch(&mut self.uses, slot);
        Some((slot.token.clone(), recommended))
    }

    fn lookup(&mut self, user: u8, scopes: u8) -> Answer {
        let partition = self.partitions.get(&user)?;
        if let Some(index) = partition
            .slots
            .iter()
            .position(|slot| slot.scopes == scopes)
        {
            return self.serve(user, index, true);
        }
        let candidates: Vec<usize> = (0..partition.slots.len())
            .filter(|index| subset(scopes, partition.slots[*index].scopes))
            .collect();
        candidates
            .into_iter()
            .find_map(|index| self.serve(user, index, false).filter(|(_, due)| !due))
    }

    /// A slow-path caller: `Some` when the cache answers, `None` when it waits.
    fn get(&mut self, user: u8, scopes: u8) -> Option<String> {
        if let Some(flight) = self.flights.get_mut(&(user, scopes)) {
            flight.waiters += 1;
            return None;
        }
        let now = self.now;
        let valid = self.partitions.get_mut(&user).and_then(|partition| {
            partition
                .slots
                .iter_mut()
                .find(|slot| slot.scopes == scopes && slot.expires_on > now)
        });
        if let Some(slot) = valid {
            Self::touch(&mut self.uses, slot);
            return Some(slot.token.clone());
        }
        self.fetches += 1;
        self.flights.insert(
            (user, scopes),
            MFlight {
                waiters: 1,
                started: now,
            },
        );
        None
    }

    fn store(
        &mut self,
        user: u8,
        scopes: u8,
        token: &str,
        expires_on: i64,
        refresh_token: Option<String>,
        now: i64,
    ) {
        let partition = self.partitions.entry(user).or_default();
        let charge = |token: &str| token.len() + ENTRY_OVERHEAD_BYTES;
        match partition
            .slots
            .iter_mut()
            .find(|slot| slot.scopes == scopes)
        {
            Some(slot) => {
                self.bytes = self.bytes + charge(token) - charge(&slot.token);
                slot.token = token.to_owned();
                slot.expires_on = expires_on;
                slot.last_attempt = i64::MIN;
                Self::stamp(&mut self.uses, slot);
            }
            None => {
                let mut slot = MSlot {
                    scopes,
                    token: token.to_owned(),
                    expires_on,
                    last_attempt: i64::MIN,
                    stamp: 0,
                };
                Self::stamp(&mut self.uses, &mut slot);
                self.len += 1;
                self.bytes += charge(token);
                partition.slots.push(slot);
            }
        }
        if let Some(refresh_token) = refresh_token {
            let old = partition.refresh_token.replace(refresh_token.clone());
            self.bytes = self.bytes + refresh_token.len() - old.map_or(0, |old| old.len());
        }
        if self.len > CAPACITY || self.bytes > MAX_BYTES {
            let mut order: Vec<(bool, u64, u8)> = self
                .partitions
                .iter()
                .map(|(user, partition)| {
                    let live = partition.slots.iter().any(|slot| slot.expires_on > now);
                    let stamp = partition
                        .slots
                        .iter()
                        .map(|slot| slot.stamp)
                        .max()
                        .unwrap_or(0);
                    (live, stamp, *user)
                })
                .collect();
            order.sort_unstable();
            for (_, _, user) in order {
                if self.len <= CAPACITY - CAPACITY / 10 && self.bytes <= MAX_BYTES - MAX_BYTES / 10
                {
                    break;
                }
                if let Some(partition) = self.partitions.remove(&user) {
                    self.len -= partition.slots.len();
                    self.bytes -= partition
                        .slots
                        .iter()
                        .map(|slot| charge(&slot.token))
                        .sum::<usize>()
                        + partition.refresh_token.map_or(0, |rt| rt.len());
                }
            }
        }
    }
}

// The system under test ----------------------------------------------------------------------

type Waiting = Pin<Box<dyn Future<Output = Result<AccessTokenInfo, CredentialError>> + Send>>;
type Answered = Result<Fetched, CredentialError>;

struct System {
    cache: TokenCache,
    /// The callers waiting, with their key.
    waiters: Vec<((u8, u8), Waiting)>,
    /// How each started request is answered.
    gates: BTreeMap<(u8, u8), tokio::sync::oneshot::Sender<Answered>>,
    fetches: Arc<AtomicUsize>,
    /// The refresh tokens requests were handed, with the user that asked.
    handed: Arc<StdMutex<Vec<(u8, String)>>>,
    hints: Vec<Arc<Hints>>,
    sequence: usize,
}

fn poll(future: &mut Waiting) -> Poll<Result<AccessTokenInfo, CredentialError>> {
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

impl System {
    fn new() -> Self {
        Self {
            cache: TokenCache::with_limits(CAPACITY, MAX_BYTES),
            waiters: Vec::new(),
            gates: BTreeMap::new(),
            fetches: Arc::default(),
            handed: Arc::default(),
            hints: (0..USERS).map(|_| Arc::default()).collect(),
            sequence: 0,
        }
    }

    fn token(&mut self, user: u8, scopes: u8, size: u16) -> String {
        self.sequence += 1;
        format!(
            "u{user}s{scopes}#{}:{}",
            self.sequence,
            "x".repeat(usize::from(size))
        )
    }

    /// A slow-path caller; `Some` when answered at once.
    fn get(&mut self, user: u8, scopes_index: u8, now: i64) -> Option<String> {
        let (sender, receiver) = tokio::sync::oneshot::channel::<Answered>();
        let fetches = self.fetches.clone();
        let handed = self.handed.clone();
        let fetch = move |refresh_token: Option<RefreshToken>| -> FetchFuture {
            fetches.fetch_add(1, Ordering::SeqCst);
            if let Some(refresh_token) = refresh_token {
                handed
                    .lock()
                    .expect("handed")
                    .push((user, refresh_token.expose_secret().to_owned()));
            }
            Box::pin(async move {
                receiver
                    .await
                    .unwrap_or_else(|_| Err(CredentialError::InvalidRequest("gone".into())))
            })
        };
        let before = self.fetches.load(Ordering::SeqCst);
        let cache = self.cache.clone();
        let mut future: Waiting = Box::pin(async move {
            cache
                .get_or_fetch(
                    &key(user),
                    &scopes(scopes_index),
                    now,
                    FetchMode::Normal,
                    fetch,
                )
                .await
        });
        let outcome = poll(&mut future);
        if self.fetches.load(Ordering::SeqCst) > before {
            self.gates.insert((user, scopes_index), sender);
        }
        match outcome {
            Poll::Ready(outcome) => Some(
                outcome
                    .expect("a cached answer")
                    .token
                    .expose_secret()
                    .to_owned(),
            ),
            Poll::Pending => {
                self.waiters.push(((user, scopes_index), future));
                None
            }
        }
    }

    /// Answers a request and collects what its callers got.
    fn answer(&mut self, flight: (u8, u8), answer: Answered) -> Vec<Result<String, String>> {
        let sender = self
            .gates
            .remove(&flight)
            .expect("a gate per request in flight");
        assert!(sender.send(answer).is_ok(), "the request was still waiting");
        let mut outcomes = Vec::new();
        let mut still = Vec::new();
        for (key, mut future) in self.waiters.drain(..) {
            if key != flight {
                still.push((key, future));
                continue;
            }
            match poll(&mut future) {
                Poll::Ready(Ok(info)) => outcomes.push(Ok(info.token.expose_secret().to_owned())),
                Poll::Ready(Err(error)) => outcomes.push(Err(error.to_string())),
                Poll::Pending => panic!("a caller of an answered request still waits"),
            }
        }
        self.waiters = still;
        outcomes
    }

    /// Everything the cache holds, read without touching it: (user, scopes) to token.
    fn contents(&self) -> BTreeMap<(u8, u8), String> {
        let mut contents = BTreeMap::new();
        for user in 0..USERS {
            for scopes_index in 0..3 {
                if let Some(token) = self.cache.peek(&key(user), &scopes(scopes_index)) {
                    contents.insert((user, scopes_index), token);
                }
            }
        }
        contents
    }
}

fn run(ops: Vec<Op>) {
    let mut system = System::new();
    let mut model = Model {
        now: 1_000_000,
        ..Model::default()
    };
    for op in ops {
        let now = model.now;
        match op {
            Op::Get { user, scopes } => {
                let got = system.get(user, scopes, now);
                assert_eq!(got, model.get(user, scopes), "{op:?}");
            }
            Op::Lookup {
                user,
                scopes: index,
            } => {
                let got = answer(system.cache.lookup(&key(user), &scopes(index), now));
                assert_eq!(got, model.lookup(user, index), "{op:?}");
            }
            Op::Hinted {
                user,
                scopes: index,
            } => {
                let hints = &system.hints[usize::from(user)];
                let got = answer(system.cache.lookup_hinted(
                    hints,
                    &key(user),
                    &scopes(index),
                    now,
                ));
                assert_eq!(got, model.lookup(user, index), "{op:?}");
            }
            Op::Complete {
                flight,
                size,
                lifetime,
                refresh_token,
            } => {
                let Some((&key, started)) = model
                    .flights
                    .iter()
                    .nth(usize::from(flight) % model.flights.len().max(1))
                    .map(|(key, flight)| (key, flight.started))
                else {
                    continue;
                };
                let token = system.token(key.0, key.1, size);
                let expires_on = started + i64::from(lifetime);
                let refresh_token =
                    refresh_token.then(|| format!("rt-u{}-{}", key.0, system.sequence));
                let outcomes = system.answer(
                    key,
                    Ok(Fetched {
                        info: AccessTokenInfo::new(token.as_str(), expires_on),
                        refresh_token: refresh_token.as_deref().map(RefreshToken::new),
                    }),
                );
                let waiters = model
                    .flights
                    .remove(&key)
                    .map_or(0, |flight| flight.waiters);
                assert_eq!(
                    outcomes.len(),
                    waiters,
                    "every caller of the request answered"
                );
                assert!(
                    outcomes
                        .iter()
                        .all(|outcome| outcome.as_deref() == Ok(token.as_str()))
                );
                model.store(key.0, key.1, &token, expires_on, refresh_token, started);
            }
            Op::Fail { flight } => {
                let Some(&key) = model
                    .flights
                    .keys()
                    .nth(usize::from(flight) % model.flights.len().max(1))
                else {
                    continue;
                };
                let outcomes =
                    system.answer(key, Err(CredentialError::InvalidRequest("refused".into())));
                let waiters = model
                    .flights
                    .remove(&key)
                    .map_or(0, |flight| flight.waiters);
                assert_eq!(outcomes.len(), waiters);
                assert!(outcomes.iter().all(Result::is_err), "the error is shared");
            }
            Op::Cancel { waiter } => {
                if system.waiters.is_empty() {
                    continue;
                }
                let index = usize::from(waiter) % system.waiters.len();
                let (key, future) = system.waiters.remove(index);
                drop(future);
                let flight = model.flights.get_mut(&key).expect("a flight per waiter");
                flight.waiters -= 1;
                if flight.waiters == 0 {
                    model.flights.remove(&key);
                    system.gates.remove(&key);
                }
            }
            Op::Bypass {
                user,
                scopes: index,
                size,
                lifetime,
            } => {
                let token = system.token(user, index, size);
                let expires_on = now + i64::from(lifetime);
                let info = AccessTokenInfo::new(token.as_str(), expires_on);
                let fetch = move |_| -> FetchFuture {
                    Box::pin(async move {
                        Ok(Fetched {
                            info,
                            refresh_token: None,
                        })
                    })
                };
                let got = system
                    .cache
                    .get_or_fetch(&key(user), &scopes(index), now, FetchMode::Bypass, fetch)
                    .now_or_never()
                    .expect("answered at once")
                    .expect("token");
                assert_eq!(got.token.expose_secret(), token);
                model.store(user, index, &token, expires_on, None, now);
            }
            Op::Close { user } => {
                system.hints[usize::from(user)] = Arc::default();
            }
            Op::Advance { secs } => model.now += i64::from(secs),
        }

        // The invariants, after every step.
        system
            .cache
            .check_invariants()
            .expect("counters equal the live entries");
        assert_eq!(
            (system.cache.len(), system.cache.bytes()),
            (model.len, model.bytes),
            "counters as the model's"
        );
        assert_eq!(
            system.cache.in_flight(),
            model.flights.len(),
            "nothing left in flight"
        );
        assert_eq!(
            system.fetches.load(Ordering::SeqCst),
            model.fetches,
            "one request per key"
        );
        let expected: BTreeMap<(u8, u8), String> = model
            .partitions
            .iter()
            .flat_map(|(user, partition)| {
                partition
                    .slots
                    .iter()
                    .map(move |slot| ((*user, slot.scopes), slot.token.clone()))
            })
            .collect();
        let contents = system.contents();
        assert_eq!(
            contents, expected,
            "the same entries (and eviction victims) as the model"
        );
        for ((user, _), token) in &contents {
            assert!(
                token.starts_with(&format!("u{user}s")),
                "a token in another user's partition"
            );
        }
        for user in 0..USERS {
            assert_eq!(
                system.cache.partition_stamp(&key(user)),
                model.partitions.get(&user).map(|partition| {
                    partition
                        .slots
                        .iter()
                        .map(|slot| slot.stamp)
                        .max()
                        .unwrap_or(0)
                }),
                "use order as the model's"
            );
        }
        for (user, refresh_token) in system.handed.lock().expect("handed").iter() {
            assert!(
                refresh_token.starts_with(&format!("rt-u{user}-")),
                "a request got another user's refresh token"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_cache_behaves_as_its_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
