//! Revocation through `JwtAuthLayer::revocations`: in memory, then shared through a real
//! Redis that each test starts on a free loopback port.
#![cfg(feature = "revocation")]

mod common;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use common::{ISSUER, claims_with, good_claims, mint, now, through};
use http::StatusCode;
use serde_json::Value;
use tower_jwt_auth::{JwtAuthLayer, JwtAuthLayerBuilder, Revocations, StandardClaims};

fn configured(revocations: &Revocations) -> JwtAuthLayerBuilder<StandardClaims> {
    JwtAuthLayer::builder()
        .hs256(common::SECRET)
        .issuer(common::ISSUER)
        .audience(common::AUDIENCE)
        .revocations(revocations.clone())
}

fn layer(revocations: &Revocations) -> JwtAuthLayer<StandardClaims> {
    configured(revocations).build().unwrap()
}

fn token(jti: &str) -> (String, u64) {
    let claims = claims_with(|c| {
        c.insert("jti".into(), jti.into());
    });
    (mint(&claims), claims["exp"].as_u64().unwrap())
}

fn issued_at(sub: &str, iat: u64) -> String {
    mint(&claims_with(|c| {
        c.insert("sub".into(), sub.into());
        c.insert("iat".into(), iat.into());
    }))
}

/// The status a layer answers `token` with, after asserting what a refusal looks like.
async fn status(layer: &JwtAuthLayer<StandardClaims>, token: &str) -> StatusCode {
    let (reply, calls) = through(layer, token).await;
    match reply.status {
        StatusCode::OK => assert_eq!(calls, 1),
        StatusCode::UNAUTHORIZED => {
            assert_eq!(calls, 0, "a revoked token never reaches the service");
            assert_eq!(
                reply.challenge.as_deref(),
                Some(
                    "Bearer realm=\"api\", error=\"invalid_token\", \
                     error_description=\"the token has been revoked\""
                )
            );
            assert_eq!(
                reply.json()["error_description"],
                "the token has been revoked"
            );
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert_eq!(calls, 0);
            assert_eq!(reply.retry_after.as_deref(), Some("5"));
            assert_eq!(reply.json()["error"], "temporarily_unavailable");
        }
        other => panic!("unexpected {other}: {:?}", reply.body),
    }
    reply.status
}

#[tokio::test]
async fn a_revoked_jti_is_refused_with_invalid_token_and_others_pass() {
    let revocations = Revocations::in_memory();
    let layer = layer(&revocations);
    let (logged_out, exp) = token("session-1");
    let (other, _) = token("session-2");
    assert_eq!(status(&layer, &logged_out).await, StatusCode::OK);
    revocations.revoke_token(ISSUER, "session-1", exp);
    assert_eq!(status(&layer, &logged_out).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&layer, &other).await, StatusCode::OK);
    // A token without `jti` is not touched by jti revocations.
    assert_eq!(status(&layer, &mint(&good_claims())).await, StatusCode::OK);
}

#[cfg(feature = "cache")]
#[tokio::test]
async fn the_token_cache_never_resurrects_a_revoked_token() {
    let revocations = Revocations::in_memory();
    let layer = configured(&revocations).cache(100).build().unwrap();
    let (cached, exp) = token("cached");
    // Validated and cached, then served from the cache...
    for _ in 0..3 {
        assert_eq!(status(&layer, &cached).await, StatusCode::OK);
    }
    // ...and refused from the cache once revoked, by jti or by subject.
    revocations.revoke_token(ISSUER, "cached", exp);
    assert_eq!(status(&layer, &cached).await, StatusCode::UNAUTHORIZED);

    let before = issued_at("carol", now() - 10);
    assert_eq!(status(&layer, &before).await, StatusCode::OK);
    assert_eq!(status(&layer, &before).await, StatusCode::OK);
    revocations.revoke_subject(ISSUER, "carol");
    assert_eq!(status(&layer, &before).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_subject_revocation_covers_its_second_and_not_the_next() {
    let revocations = Revocations::in_memory();
    let layer = layer(&revocations);
    let t = now() - 60;
    revocations.revoke_subject_issued_until(ISSUER, "alice", t);
    assert_eq!(
        status(&layer, &issued_at("alice", t - 1)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&layer, &issued_at("alice", t)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&layer, &issued_at("alice", t + 1)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&layer, &issued_at("bob", t - 1)).await,
        StatusCode::OK
    );
    // Without `iat` a token cannot show it is newer.
    let no_iat = mint(&claims_with(|c| {
        c.remove("iat");
    }));
    assert_eq!(status(&layer, &no_iat).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_is_checked_last_so_other_failures_keep_their_answer() {
    let revocations = Revocations::in_memory();
    let layer = layer(&revocations);
    revocations.revoke_subject(ISSUER, "alice");
    let expired = mint(&claims_with(|c| {
        c.insert("exp".into(), Value::from(now() - 3600));
        c.insert("iat".into(), Value::from(now() - 7200));
    }));
    let (reply, calls) = through(&layer, &expired).await;
    assert_eq!((reply.status, calls), (StatusCode::UNAUTHORIZED, 0));
    assert_eq!(reply.json()["error_description"], "the token has expired");
}

/// Shared through a real Redis (feature `redis`).
#[cfg(feature = "redis")]
mod through_redis {
    use std::time::{Duration, Instant};

    use tower_jwt_auth::OutOfSync;

    use super::*;
    use crate::redis_server::RedisServer;

    /// Polls `layer` with `token` until it answers `want`, and says how long that took.
    async fn until_status(
        layer: &JwtAuthLayer<StandardClaims>,
        token: &str,
        want: StatusCode,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if status(layer, token).await == want {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "not {want} within {within:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn shared(redis: &RedisServer) -> Revocations {
        shared_with(redis, OutOfSync::Serve).await
    }

    async fn shared_with(redis: &RedisServer, policy: OutOfSync) -> Revocations {
        let client = redis::Client::open(redis.url()).unwrap();
        Revocations::builder()
            .when_out_of_sync(policy)
            .redis(client)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn through_redis_a_revocation_reaches_every_instance_within_200_ms() {
        let Some(redis) = RedisServer::start("revocation through redis") else {
            return;
        };
        let (a, b) = (shared(&redis).await, shared(&redis).await);
        let (layer_a, layer_b) = (layer(&a), configured(&b).cache(100).build().unwrap());
        let mut worst = Duration::ZERO;
        for i in 0..20 {
            let (token, exp) = token(&format!("propagation-{i}"));
            assert_eq!(status(&layer_b, &token).await, StatusCode::OK);
            a.revoke_token(ISSUER, &format!("propagation-{i}"), exp);
            // Here at once...
            assert_eq!(status(&layer_a, &token).await, StatusCode::UNAUTHORIZED);
            // ...there within 200 ms.
            let took = until_status(
                &layer_b,
                &token,
                StatusCode::UNAUTHORIZED,
                Duration::from_millis(200),
            )
            .await;
            worst = worst.max(took);
        }
        println!("revocation propagation A -> B, worst of 20: {worst:?}");

        // Subject revocations travel the same way.
        let old = issued_at("dave", now() - 5);
        assert_eq!(status(&layer_a, &old).await, StatusCode::OK);
        b.revoke_subject(ISSUER, "dave");
        until_status(
            &layer_a,
            &old,
            StatusCode::UNAUTHORIZED,
            Duration::from_millis(200),
        )
        .await;

        // A set started afterwards loads all of it.
        let fresh = layer(&shared(&redis).await);
        assert_eq!(
            status(&fresh, &token("propagation-7").0).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status(&fresh, &old).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(&fresh, &token("never-revoked").0).await,
            StatusCode::OK
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_redis_instances_keep_serving_and_nothing_is_lost() {
        let Some(mut redis) = RedisServer::start("revocation while redis is down") else {
            return;
        };
        let (a, b) = (shared(&redis).await, shared(&redis).await);
        let (layer_a, layer_b) = (layer(&a), layer(&b));
        let (before, exp_before) = token("before-outage");
        a.revoke_token(ISSUER, "before-outage", exp_before);
        until_status(
            &layer_b,
            &before,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(1),
        )
        .await;

        assert!(layer_b.readiness().is_ready(), "{}", layer_b.readiness());
        redis.kill();
        // Readiness says the replica lost Redis (beyond 2 s), while the layer serves on.
        let deadline = Instant::now() + Duration::from_secs(10);
        let readiness = loop {
            let readiness = layer_b.readiness();
            if !readiness.is_ready() {
                break readiness;
            }
            assert!(Instant::now() < deadline, "ready without Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let failing: Vec<_> = readiness.failing().collect();
        assert_eq!(failing.len(), 1, "{readiness}");
        assert_eq!(failing[0].part, "revocations");
        assert!(
            readiness.to_json().contains("out of sync"),
            "{}",
            readiness.to_json()
        );
        // Both keep serving, from their replicas.
        let (during, exp_during) = token("during-outage");
        assert_eq!(status(&layer_a, &during).await, StatusCode::OK);
        assert_eq!(status(&layer_b, &during).await, StatusCode::OK);
        assert_eq!(status(&layer_b, &before).await, StatusCode::UNAUTHORIZED);
        // A revocation made meanwhile holds here at once...
        a.revoke_token(ISSUER, "during-outage", exp_during);
        assert_eq!(status(&layer_a, &during).await, StatusCode::UNAUTHORIZED);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            status(&layer_b, &during).await,
            StatusCode::OK,
            "B cannot know yet"
        );
        assert!(b.out_of_sync_for() > Duration::from_secs(1));
        assert!(
            !a.flush(Duration::from_millis(100)).await,
            "A still holds it"
        );

        // ...and reaches the others once Redis is back.
        redis.restart();
        assert!(
            a.flush(Duration::from_secs(5)).await,
            "stored once Redis is back"
        );
        let took = until_status(
            &layer_b,
            &during,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(5),
        )
        .await;
        println!("revocation made during the outage reached B {took:?} after Redis came back");
        assert!(b.out_of_sync_for() < Duration::from_secs(1));
        assert!(layer_b.readiness().is_ready(), "{}", layer_b.readiness());

        // A set started now knows both.
        let fresh = layer(&shared(&redis).await);
        assert_eq!(status(&fresh, &before).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&fresh, &during).await, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_that_lost_its_data_gets_it_back_from_the_instances() {
        let Some(mut redis) = RedisServer::start("revocation after redis lost its data") else {
            return;
        };
        let a = shared(&redis).await;
        let (token, exp) = token("survivor");
        a.revoke_token(ISSUER, "survivor", exp);
        let fresh = layer(&shared(&redis).await);
        until_status(
            &fresh,
            &token,
            StatusCode::UNAUTHORIZED,
            Duration::from_millis(200),
        )
        .await;
        // Redis comes back empty (its files are gone): A, reconnecting, writes back what it holds.
        redis.kill();
        redis.wipe();
        redis.restart();
        let later = layer(&shared(&redis).await);
        until_status(
            &later,
            &token,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(5),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuse_when_out_of_sync_answers_503_with_retry_after_until_redis_is_back() {
        let Some(mut redis) = RedisServer::start("revocation refuse when out of sync") else {
            return;
        };
        let strict = shared_with(
            &redis,
            OutOfSync::Refuse {
                after: Duration::from_secs(1),
            },
        )
        .await;
        let layer = layer(&strict);
        let (token, _) = token("strict");
        assert_eq!(status(&layer, &token).await, StatusCode::OK);
        redis.kill();
        // Within the bound: served.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(&layer, &token).await, StatusCode::OK);
        // Past it: 503 with Retry-After.
        until_status(
            &layer,
            &token,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(3),
        )
        .await;
        redis.restart();
        until_status(&layer, &token, StatusCode::OK, Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn started_while_redis_is_down_it_serves_then_loads_when_redis_arrives() {
        let Some(mut redis) = RedisServer::start("revocation started without redis") else {
            return;
        };
        let writer = shared(&redis).await;
        let (token, exp) = token("known-to-redis");
        writer.revoke_token(ISSUER, "known-to-redis", exp);
        drop(writer);
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis.kill();
        let started = Instant::now();
        let late = layer(&shared(&redis).await);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "start does not hang on Redis"
        );
        assert_eq!(status(&late, &token).await, StatusCode::OK, "not known yet");
        redis.restart();
        until_status(
            &late,
            &token,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(5),
        )
        .await;
    }

    /// Security review 3, finding 4: a reader that fell behind the trimmed log never noticed (it
    /// compared the oldest entry with the id it had already advanced to), lost the revocations
    /// trimmed away, and still claimed to be in sync. Here, in one atomic step while the instance
    /// blocks in `XREAD`, a revocation is stored as the writer stores it, more entries than the
    /// log then keeps are appended, and the log is trimmed: the instance must refuse the token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_behind_the_trimmed_log_reloads_and_refuses_the_token() {
        let Some(redis) = RedisServer::start("trimmed revocation log") else {
            return;
        };
        let lagging = shared(&redis).await;
        let layer = layer(&lagging);
        let (token, exp) = token("trimmed-away");
        assert_eq!(status(&layer, &token).await, StatusCode::OK);

        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let prefix = "tower-jwt-auth:revocations";
        let member = format!("{}:{}{}", ISSUER.len(), ISSUER, "trimmed-away");
        let until = exp + 600;
        let _: () = redis::Script::new(
            r"
            redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
            redis.call('XADD', KEYS[2], '*', 'k', 't', 'i', ARGV[3], 'v', ARGV[4], 's', 0, 'u', ARGV[2])
            for i = 1, 20 do redis.call('XADD', KEYS[2], '*', 'k', 'x') end
            redis.call('XTRIM', KEYS[2], 'MAXLEN', 5)
            ",
        )
        .key(format!("{prefix}:tokens"))
        .key(format!("{prefix}:log"))
        .arg(&member)
        .arg(until)
        .arg(ISSUER)
        .arg("trimmed-away")
        .invoke_async(&mut conn)
        .await
        .unwrap();

        let deadline = Instant::now() + Duration::from_secs(5);
        while status(&layer, &token).await == StatusCode::OK {
            assert!(
                Instant::now() < deadline,
                "the lagging instance never learned of the trimmed revocation"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status(&layer, &token).await, StatusCode::UNAUTHORIZED);
    }

    /// Security review 3, finding 9: `/logout` of an external token with a distant `exp` left an
    /// entry (here, and in Redis) that never expired. It is kept at most the longest token
    /// lifetime plus the leeway.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_revocation_is_kept_no_longer_than_the_longest_token_lifetime() {
        let Some(redis) = RedisServer::start("bounded token revocation") else {
            return;
        };
        let client = redis::Client::open(redis.url()).unwrap();
        let revocations = Revocations::builder()
            .max_token_lifetime(Duration::from_secs(3600))
            .redis(client.clone())
            .await
            .unwrap();
        let ten_years = now() + 10 * 365 * 86_400;
        revocations.revoke_token(ISSUER, "forever", ten_years);
        assert!(revocations.flush(Duration::from_secs(5)).await);
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let member = format!("{}:{}{}", ISSUER.len(), ISSUER, "forever");
        let until: f64 =
            redis::AsyncCommands::zscore(&mut conn, "tower-jwt-auth:revocations:tokens", &member)
                .await
                .unwrap();
        let bound = now() + 3600 + tower_jwt_auth::MAX_LEEWAY.as_secs();
        assert!(until as u64 <= bound, "kept until {until}, past {bound}");
        // Still refused meanwhile.
        let token = mint(&claims_with(|c| {
            c.insert("jti".into(), "forever".into());
        }));
        assert_eq!(
            status(&layer(&revocations), &token).await,
            StatusCode::UNAUTHORIZED
        );
    }

    /// Security review 3, finding 1: when Redis accepts reads but refuses writes (`maxmemory`
    /// reached with `noeviction`), a revocation applied only where it was made, and every
    /// instance kept reporting itself in sync, so `OutOfSync::Refuse` never fired. The age of the
    /// oldest revocation waiting to be stored now counts as being out of sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocations_redis_will_not_store_count_as_out_of_sync() {
        let Some(redis) = RedisServer::start("revocations redis refuses to store") else {
            return;
        };
        let refuse = OutOfSync::Refuse {
            after: Duration::from_secs(1),
        };
        let (a, b) = (
            shared_with(&redis, refuse).await,
            shared_with(&redis, refuse).await,
        );
        let (layer_a, layer_b) = (layer(&a), layer(&b));
        let (logged_out, exp) = token("refused-write");
        let (other, _) = token("innocent");
        assert_eq!(status(&layer_a, &other).await, StatusCode::OK);

        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let config = |value: &'static str| {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(value)
                .clone()
        };
        let _: () = config("1").query_async(&mut conn).await.unwrap();

        a.revoke_token(ISSUER, "refused-write", exp);
        // Here at once; not published, and no silent success for whoever waits for it.
        assert_eq!(
            status(&layer_a, &logged_out).await,
            StatusCode::UNAUTHORIZED
        );
        assert!(!a.flush(Duration::from_millis(1500)).await);
        assert!(
            a.unpublished_for() >= Duration::from_secs(1),
            "{:?}",
            a.unpublished_for()
        );
        assert!(a.out_of_sync_for() > Duration::from_secs(1));
        // Past the bound, A refuses with 503 instead of serving as if in sync; B, whose reads
        // work and who made no revocation, serves (and cannot know the token is revoked).
        assert_eq!(
            status(&layer_a, &other).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&layer_b, &other).await, StatusCode::OK);
        assert!(b.out_of_sync_for() < Duration::from_secs(1));

        // Redis takes writes again: the revocation arrives everywhere and A serves again.
        let _: () = config("0").query_async(&mut conn).await.unwrap();
        assert!(a.flush(Duration::from_secs(10)).await);
        assert_eq!(a.unpublished_for(), Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(&layer_b, &logged_out).await == StatusCode::OK {
            assert!(Instant::now() < deadline, "B never heard of the revocation");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status(&layer_a, &other).await, StatusCode::OK);
    }
}
