//! The login throttle of the library (`throttle::LoginThrottle`), through its public API, in
//! one process and shared through a real Redis that each test starts on a free port.

#![cfg(feature = "password")]

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::{net::IpAddr, time::Duration};

#[cfg(feature = "redis")]
use redis::AsyncCommands;
#[cfg(feature = "redis")]
use redis_server::RedisServer;
use tower_jwt_auth::{
    ConfigError,
    password::Passwords,
    throttle::{LoginError, LoginThrottle},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn verify_counts_failures_clears_on_success_and_locks_with_retry_after() {
    let passwords = Passwords::new();
    let phc = passwords.hash("wonderland").await.unwrap();
    let throttle = LoginThrottle::builder()
        .max_failures(3)
        .lockout(Duration::from_secs(60))
        .build()
        .unwrap();
    let home = ip("192.0.2.1");
    let verify = |password: &'static str| {
        let (throttle, passwords, phc) = (&throttle, &passwords, phc.clone());
        async move {
            throttle
                .verify(passwords, "alice", home, password, Some(&phc))
                .await
        }
    };
    assert_eq!(verify("wrong").await, Ok(false));
    assert_eq!(verify("wrong").await, Ok(false));
    // A success clears the pair: two more failures are allowed again.
    assert_eq!(verify("wonderland").await, Ok(true));
    assert_eq!(verify("wrong").await, Ok(false));
    assert_eq!(verify("wrong").await, Ok(false));
    assert_eq!(verify("wrong").await, Ok(false));
    // Locked: even the right password is not checked.
    match verify("wonderland").await {
        Err(LoginError::Throttled(t)) => assert_eq!(t.retry_after_secs(), 60),
        other => panic!("expected a lockout, got {other:?}"),
    }
    // An unknown user costs the same and is throttled alike.
    for _ in 0..3 {
        assert_eq!(
            throttle
                .verify(&passwords, "mallory", home, "x", None)
                .await,
            Ok(false)
        );
    }
    assert!(matches!(
        throttle
            .verify(&passwords, "mallory", home, "x", None)
            .await,
        Err(LoginError::Throttled(_))
    ));
}

#[tokio::test]
async fn busy_password_workers_refund_the_attempt() {
    // One worker and room for one waiting call: of three at once, the third is refused busy.
    let passwords = Passwords::new().max_concurrent(1).unwrap().max_queue(1);
    let phc = passwords.hash("wonderland").await.unwrap();
    let throttle = LoginThrottle::builder().max_failures(4).build().unwrap();
    let client = ip("192.0.2.9");
    let wrong = || throttle.verify(&passwords, "alice", client, "wrong", Some(&phc));
    let (a, b, c) = tokio::join!(wrong(), wrong(), wrong());
    let mut outcomes = [a, b, c];
    outcomes.sort_by_key(|o| o.is_ok());
    assert_eq!(outcomes, [Err(LoginError::Busy), Ok(false), Ok(false)]);
    // The busy one was refunded: two failures counted, so two more are admitted (the second
    // of them locks the pair); had it counted, only one would be.
    assert_eq!(wrong().await, Ok(false));
    assert_eq!(wrong().await, Ok(false));
    assert!(matches!(wrong().await, Err(LoginError::Throttled(_))));
}

#[test]
fn settings_are_checked_by_build() {
    let err = LoginThrottle::builder()
        .max_failures(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::OutOfRange("LoginThrottleBuilder::max_failures must be at least 1")
    );
    let err = LoginThrottle::builder()
        .lockout(Duration::from_secs(600))
        .max_lockout(Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("max_lockout"), "{err}");
}

/// Security review 3, finding 2: every attempt with a new username (up to 256 bytes) left two
/// keys in Redis for one to two hours, even when it was answered `503` busy: an anonymous
/// flood grew the Redis that also holds the revocations without limit. Now the keys have a
/// fixed size, and an attempt that was refunded (never verified) leaves nothing.
///
/// The bound this shows: an attempt that is refused (locked) or refunded (busy) writes
/// nothing that stays; one whose password was verified and was wrong leaves at most two keys
/// of the same size whatever the username. An attacker's growth per minute is therefore at
/// most (password verifications per minute) x (the two keys' size, measured below), and the
/// verifications are bounded by the password workers (`Passwords::max_concurrent`).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_usernames_cannot_grow_the_shared_throttle() {
    let Some(redis) = RedisServer::start("shared throttle flood") else {
        return;
    };
    let client = redis::Client::open(redis.url()).unwrap();
    let throttle = LoginThrottle::builder()
        .redis(client.clone())
        .build()
        .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let attacker = ip("203.0.113.66");

    // 20,000 attempts with distinct usernames, each refunded as a busy server does.
    for i in 0..20_000 {
        let user = format!("{i:0>256}");
        let attempt = throttle.begin(&user, attacker).await.unwrap();
        attempt.refund().await;
    }
    let keys: usize = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 0, "refunded attempts left keys behind");

    // Counted failures: the keys are of one size whatever the username's length.
    let usage = |user: String| {
        let (throttle, mut conn) = (&throttle, conn.clone());
        async move {
            drop(throttle.begin(&user, attacker).await.unwrap()); // a wrong password
            let keys: Vec<String> = conn.keys("tower-jwt-auth:throttle:*").await.unwrap();
            let mut total = 0u64;
            for key in &keys {
                let bytes: u64 = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                total += bytes;
                let _: () = conn.del(key).await.unwrap();
            }
            (keys.len(), total)
        }
    };
    let (short_keys, short) = usage("a".into()).await;
    let (long_keys, long) = usage("é".repeat(128)).await;
    assert_eq!((short_keys, long_keys), (2, 2));
    assert_eq!(short, long, "the keys' size depends on the username");
    assert!(long <= 400, "two keys take {long} bytes");
    println!("one counted failure: 2 keys, {long} bytes in Redis");
}

/// Security review 3, finding 9: when Redis does not answer, the throttle fails open to
/// per-instance tables; that is now counted (and still throttles per instance).
#[cfg(feature = "redis")]
#[tokio::test]
async fn without_redis_the_throttle_counts_locally_and_says_so() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let throttle = LoginThrottle::builder()
        .max_failures(2)
        .redis(redis::Client::open(url).unwrap())
        .build()
        .unwrap();
    let client = ip("192.0.2.5");
    drop(throttle.begin("alice", client).await.unwrap());
    drop(throttle.begin("alice", client).await.unwrap());
    assert!(throttle.begin("alice", client).await.is_err());
    // Three attempts judged here alone, the refused one included.
    assert_eq!(throttle.local_fallbacks(), 3);
}

/// `PasswordGrant::parse`: the token request of RFC 6749 section 4.3.2 as a form, or the
/// same members as JSON; each refusal with its status, error code and description.
#[test]
fn a_password_grant_is_read_from_a_form_or_json_and_refused_clearly() {
    use http::{HeaderValue, StatusCode};
    use tower_jwt_auth::password::{GrantError, MAX_USERNAME_LEN, PasswordGrant};

    let form = HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=UTF-8");
    let json = HeaderValue::from_static("application/json");
    let parse =
        |media: &HeaderValue, body: &str| PasswordGrant::parse(Some(media), body.as_bytes());

    let grant = parse(
        &form,
        "grant_type=password&username=al%20ice&password=p%26w&scope=a+b",
    )
    .unwrap();
    assert_eq!(grant.username(), "al ice");
    assert_eq!(grant.password(), "p&w");
    assert_eq!(grant.scope(), Some("a b"));
    let grant = parse(
        &json,
        r#"{"username":"bob","password":"builder","client_id":"x"}"#,
    );
    assert_eq!(grant.unwrap().password(), "builder");
    // Unknown form parameters are ignored (RFC 6749 section 3.2).
    assert!(parse(&form, "username=a&password=b&client_id=c").is_ok());
    let longest = format!("username={}&password=b", "u".repeat(MAX_USERNAME_LEN));
    assert!(parse(&form, &longest).is_ok());

    let refusals = [
        (parse(&form, "username=a"), GrantError::Missing),
        (parse(&json, r#"{"password":"b"}"#), GrantError::Missing),
        (
            parse(&form, "username=a&username=b&password=c"),
            GrantError::Malformed,
        ),
        (
            parse(&json, r#"{"username":"a","username":"b","password":"c"}"#),
            GrantError::Malformed,
        ),
        (
            parse(&json, r#"["alice","wonderland"]"#),
            GrantError::Malformed,
        ),
        (
            parse(&json, r#"{"username":1,"password":"b"}"#),
            GrantError::Malformed,
        ),
        (
            parse(
                &form,
                &format!("username={}&password=b", "u".repeat(MAX_USERNAME_LEN + 1)),
            ),
            GrantError::TooLong,
        ),
        (
            parse(&form, &format!("username=a&password={}", "p".repeat(1025))),
            GrantError::TooLong,
        ),
        (
            parse(&form, "grant_type=client_credentials&username=a&password=b"),
            GrantError::UnsupportedGrantType,
        ),
        (
            parse(
                &HeaderValue::from_static("text/plain"),
                "username=a&password=b",
            ),
            GrantError::UnsupportedMediaType,
        ),
        (
            PasswordGrant::parse(None, b"username=a&password=b"),
            GrantError::UnsupportedMediaType,
        ),
    ];
    for (got, want) in refusals {
        assert_eq!(got.unwrap_err(), want);
    }
    let answers: Vec<_> = [
        GrantError::UnsupportedMediaType,
        GrantError::Malformed,
        GrantError::Missing,
        GrantError::TooLong,
        GrantError::UnsupportedGrantType,
    ]
    .iter()
    .map(|e| (e.status(), e.error_code(), e.description()))
    .collect();
    assert_eq!(
        answers,
        [
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "send application/x-www-form-urlencoded or application/json"
            ),
            (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "malformed login body"
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "username and password are required"
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "username or password too long"
            ),
            (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be password"
            ),
        ]
    );
    // Never the password in `Debug`.
    let grant = parse(&form, "username=alice&password=wonderland").unwrap();
    let shown = format!("{grant:?}");
    assert!(
        shown.contains("alice") && !shown.contains("wonderland"),
        "{shown}"
    );
}
