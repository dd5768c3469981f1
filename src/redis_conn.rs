//! The Redis connection of a request that waits on Redis (a login, a DPoP proof): it fails
//! fast, and the caller's fallback decides what an outage means.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::ConfigError;

/// A lazy connection with a 250 ms connect and a 500 ms response timeout, and no retry.
/// `setting` names the builder step for the error.
pub(crate) fn fail_fast(
    client: redis::Client,
    setting: &'static str,
) -> Result<ConnectionManager, ConfigError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(250)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|_| ConfigError::InvalidValue(setting))
}
