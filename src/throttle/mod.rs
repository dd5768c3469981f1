//! Login throttling after the OWASP authentication cheat sheet (feature `password`).
//!
//! [`LoginThrottle`] sits in front of [`Passwords::verify`](crate::password::Passwords::verify)
//! in a login handler ([`LoginThrottle::verify`] runs both):
//!
//! - **Per (username, client)**: `max_failures` failed attempts lock the pair out for
//!   `lockout`; each further lockout of the same pair doubles, up to `max_lockout`. A
//!   successful login clears the pair.
//! - **Per account, across all clients**: `account_max_failures` failures within
//!   `account_window` lock the account for clients it has never logged in from, which bounds
//!   distributed guessing (a botnet, a rotating IPv6 range) without letting a stranger lock
//!   the owner out of an address the owner has used before.
//! - **Counted before verifying**: [`LoginThrottle::begin`] counts an attempt the moment it is
//!   admitted, so a burst of concurrent guesses cannot get more verifications than the
//!   budget. The [`Attempt`] it returns is then [`succeeded`](Attempt::succeeded) (the pair
//!   starts afresh), dropped (it stays counted as a failure), or
//!   [`refund`](Attempt::refund)ed when the password was never checked (the password workers
//!   were busy).
//! - **Clients** are IPv4 addresses or IPv6 /64 prefixes (one subscriber's whole range), see
//!   [`Client`]; [`TrustedProxies`] believes `X-Forwarded-For` only from configured proxies.
//!
//! Unknown usernames are tracked exactly like real ones, so the throttle says nothing about
//! which accounts exist. In one process every table is bounded (O(1) work per attempt, behind
//! one mutex held only for that work).
//!
//! **Shared** (feature `redis` too, [`LoginThrottleBuilder::redis`]): every instance counts
//! against the same budgets, with the same rules, each step one Lua script (atomic, on
//! Redis' clock), keys expiring with their windows. When Redis does not answer within 500 ms
//! the throttle fails open to the per-instance tables, with a warning once per outage:
//! logins keep working, throttled per instance, until Redis is back.
//!
//! ```
//! use std::{net::IpAddr, time::Duration};
//!
//! use tower_jwt_auth::throttle::LoginThrottle;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let throttle = LoginThrottle::builder()
//!     .max_failures(3)
//!     .lockout(Duration::from_secs(60))
//!     .build()?;
//! let client: IpAddr = "192.0.2.7".parse()?;
//! for _ in 0..3 {
//!     let attempt = throttle.begin("alice", client).await?;
//!     // ... the password was wrong: dropping the attempt keeps it counted.
//!     drop(attempt);
//! }
//! let locked = throttle.begin("alice", client).await.unwrap_err();
//! assert_eq!(locked.retry_after_secs(), 60);
//! # Ok(())
//! # }
//! ```

mod client;
mod local;
mod login;
#[cfg(feature = "redis")]
mod shared;
mod table;

pub use client::{Client, TrustedProxies};
pub use login::{
    Attempt, DEFAULT_CAPACITY, LoginError, LoginThrottle, LoginThrottleBuilder, Throttled,
};
