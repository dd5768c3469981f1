//! The login kit of the library through its public API: the throttle
//! (`throttle::LoginThrottle`), in one process and shared through a real Redis that each test
//! starts on a free port; the password grant's body; and `password::PasswordLogin`, the
//! whole token endpoint as one service.

#![cfg(feature = "password")]

#[path = "support/proof.rs"]
mod proof;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::{net::IpAddr, time::Duration};

use http::StatusCode;

#[cfg(feature = "redis")]
use redis::AsyncCommands;
#[cfg(feature = "redis")]
use redis_server::RedisServer;
use tower_jwt_auth::{
    ConfigError,
    password::{Account, Accounts, LoginRefusal, PasswordLogin, Passwords},
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

// ---- PasswordLogin: the token endpoint ----

const ORIGIN: &str = "https://api.example";

fn token_issuer() -> tower_jwt_auth::TokenIssuer {
    tower_jwt_auth::TokenIssuer::builder()
        .hs256("a shared secret of at least 32 bytes")
        .issuer("todo-server")
        .audience("todo-api")
        .build()
        .unwrap()
}

/// alice (`todos:read todos:write`) and bob (`todos:read`).
async fn accounts(passwords: &Passwords) -> std::collections::HashMap<String, Account> {
    let mut accounts = std::collections::HashMap::new();
    for (name, password, scope) in [
        ("alice", "wonderland", "todos:read todos:write"),
        ("bob", "builder", "todos:read"),
    ] {
        let phc = passwords.hash(password).await.unwrap();
        accounts.insert(name.to_owned(), Account::new(phc, scope));
    }
    accounts
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: serde_json::Value,
}

/// `POST /login` with `body` (a form unless it starts with `{`), from `peer`.
async fn post<S>(login: &S, body: &str, peer: &str, headers: &[(&str, &str)]) -> Answer
where
    S: tower::Service<
            http::Request<String>,
            Response = http::Response<http_body_util::Full<bytes::Bytes>>,
            Error = std::convert::Infallible,
        > + Clone,
{
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let media = match body.starts_with('{') {
        true => "application/json",
        false => "application/x-www-form-urlencoded",
    };
    let mut req = http::Request::post(format!("{ORIGIN}/login"))
        .header(http::header::CONTENT_TYPE, media)
        .body(body.to_owned())
        .unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(peer);
    let res = login.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

/// The claims of an issued token (its signature is the issuer's business, tested there).
fn payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn refusal(answer: &Answer) -> (StatusCode, &str, &str) {
    (
        answer.status,
        answer.body["error"].as_str().unwrap_or("-"),
        answer.body["error_description"].as_str().unwrap_or("-"),
    )
}

#[tokio::test]
async fn password_login_issues_a_token_response_and_refuses_as_rfc_6749_says() {
    let passwords = Passwords::new();
    let login = PasswordLogin::builder(token_issuer(), accounts(&passwords).await)
        .passwords(passwords)
        .max_body(256)
        .build()
        .unwrap();
    let peer = "192.0.2.1";

    // RFC 6749 section 5.1: the token, never cached.
    let ok = post(
        &login,
        "grant_type=password&username=alice&password=wonderland",
        peer,
        &[],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers[http::header::CACHE_CONTROL], "no-store");
    assert_eq!(ok.headers[http::header::PRAGMA], "no-cache");
    assert_eq!(ok.headers[http::header::CONTENT_TYPE], "application/json");
    assert_eq!(ok.body["token_type"], "bearer");
    assert_eq!(ok.body["scope"], "todos:read todos:write");
    assert_eq!(ok.body["expires_in"], 1800);
    let claims = payload(ok.body["access_token"].as_str().unwrap());
    assert_eq!(
        (&claims["sub"], &claims["scope"]),
        (&"alice".into(), &"todos:read todos:write".into())
    );
    // JSON too.
    let json = post(
        &login,
        r#"{"username": "bob", "password": "builder"}"#,
        peer,
        &[],
    )
    .await;
    assert_eq!(
        (json.status, &json.body["scope"]),
        (StatusCode::OK, &"todos:read".into())
    );

    // A wrong password and an unknown user: the same invalid_grant, the same headers.
    let wrong = post(&login, "username=alice&password=guess", peer, &[]).await;
    let unknown = post(&login, "username=mallory&password=guess", peer, &[]).await;
    let invalid = (
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "Invalid username or password",
    );
    assert_eq!(refusal(&wrong), invalid);
    assert_eq!(refusal(&unknown), invalid);
    assert_eq!(wrong.headers, unknown.headers);
    assert_eq!(wrong.headers[http::header::CACHE_CONTROL], "no-store");

    // RFC 6749 section 3.3: a narrower scope is granted, a wider one refused, but only
    // once the password is right (an unknown user asking for anything is invalid_grant).
    let narrow = post(
        &login,
        "username=alice&password=wonderland&scope=todos:read",
        peer,
        &[],
    )
    .await;
    assert_eq!(narrow.body["scope"], "todos:read");
    let wide = post(
        &login,
        "username=bob&password=builder&scope=todos:read%20todos:write",
        peer,
        &[],
    )
    .await;
    assert_eq!(
        refusal(&wide),
        (
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the scope asked for is not granted to this account"
        )
    );
    let stranger = post(
        &login,
        "username=mallory&password=x&scope=todos:write",
        peer,
        &[],
    )
    .await;
    assert_eq!(refusal(&stranger), invalid);

    // The body: too long, not a grant.
    let long = format!("username=alice&password={}", "p".repeat(256));
    assert_eq!(
        refusal(&post(&login, &long, peer, &[]).await),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large"
        )
    );
    assert_eq!(
        refusal(&post(&login, "username=alice", peer, &[]).await),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "username and password are required"
        )
    );
    assert_eq!(
        refusal(&post(&login, "grant_type=client_credentials", peer, &[]).await),
        (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be password"
        )
    );
    // Nothing secret in its Debug.
    let shown = format!("{login:?}");
    assert!(
        !shown.contains("argon2") && !shown.contains("secret"),
        "{shown}"
    );
    let shown = format!("{:?}", Account::new("$argon2id$v=19$...", "todos:read"));
    assert!(!shown.contains("argon2"), "{shown}");
}

#[tokio::test]
async fn password_login_throttles_per_client_behind_trusted_proxies() {
    let passwords = Passwords::new();
    let login = PasswordLogin::builder(token_issuer(), accounts(&passwords).await)
        .passwords(passwords)
        .throttle(
            LoginThrottle::builder()
                .max_failures(2)
                .lockout(Duration::from_secs(60)),
        )
        .trusted_proxies([ip("10.0.0.1")])
        .build()
        .unwrap();
    let (proxy, guesser, owner) = (
        "10.0.0.1",
        [("x-forwarded-for", "203.0.113.9")],
        [("x-forwarded-for", "198.51.100.4")],
    );
    for _ in 0..2 {
        let res = post(&login, "username=alice&password=guess", proxy, &guesser).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
    }
    // The guesser is locked, even with the right password, and told when to come back.
    let locked = post(
        &login,
        "username=alice&password=wonderland",
        proxy,
        &guesser,
    )
    .await;
    assert_eq!(
        refusal(&locked),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request",
            "too many failed logins; try again later"
        )
    );
    assert_eq!(locked.headers[http::header::RETRY_AFTER], "60");
    // The owner, behind the same proxy, is another client.
    let res = post(&login, "username=alice&password=wonderland", proxy, &owner).await;
    assert_eq!(res.status, StatusCode::OK);
    // X-Forwarded-For from an untrusted peer is ignored: the peer is the client.
    for _ in 0..2 {
        post(&login, "username=bob&password=guess", "192.0.2.50", &owner).await;
    }
    let res = post(
        &login,
        "username=bob&password=builder",
        "192.0.2.50",
        &owner,
    )
    .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    let res = post(&login, "username=bob&password=builder", proxy, &owner).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(login.throttle().local_fallbacks(), 0);
}

/// Accounts whose lookup fails while `down` is set.
struct Flaky {
    down: std::sync::atomic::AtomicBool,
    accounts: std::collections::HashMap<String, Account>,
}

impl Accounts for Flaky {
    async fn find(
        &self,
        username: &str,
    ) -> Result<Option<Account>, Box<dyn std::error::Error + Send + Sync>> {
        match self.down.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err("the database is down".into()),
            false => Ok(self.accounts.get(username).cloned()),
        }
    }
}

#[tokio::test]
async fn password_login_answers_503_when_accounts_fail_and_counts_nothing() {
    let passwords = Passwords::new();
    let flaky = Flaky {
        down: true.into(),
        accounts: accounts(&passwords).await,
    };
    let login = PasswordLogin::builder(token_issuer(), std::sync::Arc::new(flaky))
        .passwords(passwords)
        .throttle(LoginThrottle::builder().max_failures(1))
        .build()
        .unwrap();
    for _ in 0..3 {
        let res = post(&login, "username=alice&password=guess", "192.0.2.1", &[]).await;
        assert_eq!(
            refusal(&res),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "logins are unavailable; try again shortly"
            )
        );
        assert_eq!(res.headers[http::header::RETRY_AFTER], "5");
    }
    login_accounts(&login)
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // None of the three was counted against max_failures(1).
    let res = post(
        &login,
        "username=alice&password=wonderland",
        "192.0.2.1",
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
}

fn login_accounts(login: &PasswordLogin<std::sync::Arc<Flaky>>) -> &Flaky {
    login.accounts()
}

#[tokio::test]
async fn password_login_binds_tokens_to_dpop_keys_and_renders_refusals_as_asked() {
    let passwords = Passwords::new();
    let dpop = tower_jwt_auth::Dpop::new(ORIGIN).mode(tower_jwt_auth::DpopMode::Required);
    let login = PasswordLogin::builder(token_issuer(), accounts(&passwords).await)
        .passwords(passwords)
        .dpop(dpop.clone().random_nonces())
        .on_refusal(|refusal: &LoginRefusal| {
            let mut res = refusal.response();
            if !refusal.is_dpop() {
                *res.body_mut() =
                    serde_json::to_vec(&serde_json::json!({"detail": refusal.description()}))
                        .unwrap()
                        .into();
            }
            res
        })
        .build()
        .unwrap();
    let key = proof::ProofKey::es256();
    let url = format!("{ORIGIN}/login");
    let form = "username=alice&password=wonderland";
    // Required: no proof is RFC 9449's invalid_dpop_proof.
    let res = post(&login, form, "192.0.2.1", &[]).await;
    assert_eq!(
        (res.status, &res.body["error"]),
        (StatusCode::BAD_REQUEST, &"invalid_dpop_proof".into())
    );
    // A proof without the server's nonce: use_dpop_nonce, with one to use.
    let proof = key.proof_for("POST", &url, None, |_, _| {});
    let res = post(&login, form, "192.0.2.1", &[("dpop", &proof)]).await;
    assert_eq!(
        (res.status, &res.body["error"]),
        (StatusCode::BAD_REQUEST, &"use_dpop_nonce".into())
    );
    let nonce = res.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof_for("POST", &url, None, |_, c| {
        c.insert("nonce".into(), nonce.clone().into());
    });
    let res = post(&login, form, "192.0.2.1", &[("dpop", &proof)]).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["token_type"], "DPoP");
    // The token names the proof's key (cnf.jkt, RFC 9449 section 6.1).
    let claims = payload(res.body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], key.jkt);
    // The same proof again is a replay.
    let res = post(&login, form, "192.0.2.1", &[("dpop", &proof)]).await;
    assert_eq!(res.body["error"], "invalid_dpop_proof");
    // Other refusals in the application's shape, still never cached.
    let proof = key.proof_for("POST", &url, None, |_, c| {
        c.insert("nonce".into(), nonce.clone().into());
    });
    let res = post(
        &login,
        "username=alice&password=guess",
        "192.0.2.1",
        &[("dpop", &proof)],
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.body,
        serde_json::json!({"detail": "Invalid username or password"})
    );
    assert_eq!(res.headers[http::header::CACHE_CONTROL], "no-store");
    // Settings are checked by build: a nonce secret too short.
    let short = PasswordLogin::builder(token_issuer(), std::collections::HashMap::new())
        .dpop(dpop.nonces("short"))
        .build();
    assert_eq!(
        short.unwrap_err(),
        ConfigError::WeakSecret {
            min_len: 32,
            len: 5
        }
    );
}
