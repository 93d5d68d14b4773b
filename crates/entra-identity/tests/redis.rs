//! The distributed cache against a real `redis-server` (which `scripts/test` installs),
//! started on a free loopback port for each test.

#![cfg(feature = "redis")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use entra_identity::TokenRequestOptions;
use entra_identity::{DistributedCache, RedisStore};

/// A redis-server of our own, stopped when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs a command with the redis crate's blocking client.
    fn command(&self, args: &[&[u8]]) -> redis::Value {
        let client = redis::Client::open(self.url()).expect("client");
        let mut connection = client.get_connection().expect("connection");
        let mut command = redis::cmd(std::str::from_utf8(args[0]).expect("name"));
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut connection).expect("command")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

const KEY: [u8; 32] = [0x5a; 32];

async fn shared_cache(redis: &RedisServer) -> DistributedCache {
    let store = RedisStore::connect(&redis.url()).await.expect("connected");
    DistributedCache::new(store, "test-key", KEY)
}

fn stored_keys(redis: &RedisServer) -> Vec<Vec<u8>> {
    match redis.command(&[b"KEYS", b"entra-identity:*"]) {
        redis::Value::Array(keys) => keys
            .into_iter()
            .filter_map(|key| match key {
                redis::Value::BulkString(bytes) => Some(bytes),
                _ => None,
            })
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn two_credentials_share_one_token_through_redis() {
    let redis = RedisServer::start();
    let emulator = emulator().await;
    let (first_builder, _) = builder(&emulator, TENANT);
    let (second_builder, second_calls) = builder(&emulator, TENANT);
    // Separate in-memory caches (each credential has its own), one distributed cache.
    let first = first_builder
        .distributed_cache(shared_cache(&redis).await)
        .build()
        .expect("first");
    let second = second_builder
        .distributed_cache(shared_cache(&redis).await)
        .build()
        .expect("second");
    let token = first
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let shared = second
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("shared");
    assert_eq!(shared.token.expose_secret(), token.token.expose_secret());
    assert_eq!(second_calls.count(), 0);
    assert_eq!(emulator.counters().token_requests, 1);

    // The entry's key reveals nothing, its value holds no token, and it expires with it.
    let keys = stored_keys(&redis);
    assert_eq!(keys.len(), 1);
    let key = String::from_utf8(keys[0].clone()).expect("utf-8");
    assert!(
        !key.contains(WORKLOAD) && !key.contains(TENANT) && !key.contains("graph"),
        "{key}"
    );
    let value = match redis.command(&[b"GET", key.as_bytes()]) {
        redis::Value::BulkString(bytes) => bytes,
        other => panic!("unexpected {other:?}"),
    };
    let signature = token
        .token
        .expose_secret()
        .rsplit('.')
        .next()
        .expect("jwt")
        .as_bytes();
    assert!(
        !value
            .windows(signature.len())
            .any(|window| window == signature)
    );
    let ttl = match redis.command(&[b"TTL", key.as_bytes()]) {
        redis::Value::Int(ttl) => ttl,
        other => panic!("unexpected {other:?}"),
    };
    assert!((3500..=3600).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_tampered_entry_is_a_miss_never_a_wrong_token() {
    let redis = RedisServer::start();
    let emulator = emulator().await;
    let (builder_one, _) = builder(&emulator, TENANT);
    let first = builder_one
        .distributed_cache(shared_cache(&redis).await)
        .build()
        .expect("first");
    first
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    let key = stored_keys(&redis).pop().expect("stored");
    let mut value = match redis.command(&[b"GET", &key]) {
        redis::Value::BulkString(bytes) => bytes,
        other => panic!("unexpected {other:?}"),
    };
    let last = value.len() - 1;
    value[last] ^= 0x01;
    redis.command(&[b"SET", &key, &value]);

    let (builder_two, _) = builder(&emulator, TENANT);
    let second = builder_two
        .distributed_cache(shared_cache(&redis).await)
        .build()
        .expect("second");
    let token = second
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("a fresh token");
    assert_eq!(
        emulator.counters().token_requests,
        2,
        "the tampered entry was not used"
    );
    assert_eq!(claims(token.token.expose_secret())["appid"], WORKLOAD);

    // Sealed with another key: also a miss.
    let stranger = RedisStore::connect(&redis.url()).await.expect("connected");
    let (builder_three, _) = builder(&emulator, TENANT);
    let third = builder_three
        .distributed_cache(DistributedCache::new(stranger, "other-key", [1; 32]))
        .build()
        .expect("third");
    third
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");
    assert_eq!(emulator.counters().token_requests, 3);
}

#[tokio::test]
async fn calls_keep_succeeding_when_redis_dies_unless_told_to_fail() {
    let mut redis = RedisServer::start();
    let emulator = emulator().await;
    let (builder_one, _) = builder(&emulator, TENANT);
    let cache = shared_cache(&redis).await;
    let first = builder_one
        .distributed_cache(cache.clone())
        .build()
        .expect("first");
    first
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("token");

    redis.stop();
    // Memory still answers the first credential.
    first
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("from memory");
    // A new credential goes to Entra ID without Redis.
    let (builder_two, _) = builder(&emulator, TENANT);
    let second = builder_two
        .distributed_cache(cache.clone())
        .build()
        .expect("second");
    second
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect("from Entra ID");
    assert_eq!(emulator.counters().token_requests, 2);

    let (builder_three, _) = builder(&emulator, TENANT);
    let strict = builder_three
        .distributed_cache(cache.fail_when_unavailable(true))
        .build()
        .expect("strict");
    let error = strict
        .get_token(&[GRAPH], TokenRequestOptions::new())
        .await
        .expect_err("Redis is down");
    assert!(
        error
            .to_string()
            .contains("distributed token cache is unavailable"),
        "{error}"
    );
    assert!(error.is_transient());
}
