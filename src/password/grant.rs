//! The resource owner password credentials grant's token request (RFC 6749 section 4.3.2),
//! read from a request body: what a `POST /login` or token endpoint takes before it checks
//! the password.

use std::fmt;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use super::MAX_PASSWORD_LEN;

/// The longest username [`PasswordGrant::parse`] accepts, in bytes.
pub const MAX_USERNAME_LEN: usize = 256;

/// A password-grant token request: `username`, `password` and the optional `scope`, from an
/// `application/x-www-form-urlencoded` body (RFC 6749 section 4.3.2) or, for clients that
/// send JSON, an `application/json` object with the same members.
///
/// `grant_type` may be left out (as FastAPI's `OAuth2PasswordRequestForm` allows); when it
/// is there it must be `password`. A parameter given twice is refused (RFC 6749 section
/// 3.2). `Debug` never shows the password.
///
/// ```
/// use http::{HeaderValue, StatusCode};
/// use tower_jwt_auth::password::{GrantError, PasswordGrant};
///
/// let form = HeaderValue::from_static("application/x-www-form-urlencoded");
/// let grant = PasswordGrant::parse(Some(&form), b"username=alice&password=wonder%20land")?;
/// assert_eq!((grant.username(), grant.password()), ("alice", "wonder land"));
///
/// let refused = PasswordGrant::parse(Some(&form), b"username=alice").unwrap_err();
/// assert_eq!(refused, GrantError::Missing);
/// assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
/// # Ok::<(), GrantError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordGrant {
    username: String,
    password: String,
    scope: Option<String>,
}

/// Why a body is not a password-grant token request. Each has the status to answer with, an
/// RFC 6749 section 5.2 error code, and a description for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantError {
    /// Neither `application/x-www-form-urlencoded` nor `application/json`: `415`.
    UnsupportedMediaType,
    /// Not a form or a JSON object, or a parameter given twice: `400 invalid_request`.
    Malformed,
    /// `username` or `password` is missing: `422 invalid_request`.
    Missing,
    /// The username is longer than [`MAX_USERNAME_LEN`] or the password than
    /// [`MAX_PASSWORD_LEN`]: `422 invalid_request`.
    TooLong,
    /// A `grant_type` other than `password`: `400 unsupported_grant_type`.
    UnsupportedGrantType,
}

impl GrantError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed | Self::UnsupportedGrantType => StatusCode::BAD_REQUEST,
            Self::Missing | Self::TooLong => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The RFC 6749 section 5.2 `error` code.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::UnsupportedGrantType => "unsupported_grant_type",
            _ => "invalid_request",
        }
    }

    /// What went wrong, for the client.
    pub fn description(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => {
                "send application/x-www-form-urlencoded or application/json"
            }
            Self::Malformed => "malformed login body",
            Self::Missing => "username and password are required",
            Self::TooLong => "username or password too long",
            Self::UnsupportedGrantType => "grant_type must be password",
        }
    }
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for GrantError {}

/// The members read, each at most once; others (`client_id`...) are ignored.
#[derive(Default, Deserialize)]
struct Members {
    username: Option<String>,
    password: Option<String>,
    grant_type: Option<String>,
    scope: Option<String>,
}

impl PasswordGrant {
    /// Reads a token request from `body`, sent with `content_type`.
    pub fn parse(content_type: Option<&HeaderValue>, body: &[u8]) -> Result<Self, GrantError> {
        let media = content_type
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let members = match media.as_deref() {
            Some("application/x-www-form-urlencoded") => form(body)?,
            Some("application/json") => {
                serde_json::from_slice(body).map_err(|_| GrantError::Malformed)?
            }
            _ => return Err(GrantError::UnsupportedMediaType),
        };
        if members.grant_type.is_some_and(|g| g != "password") {
            return Err(GrantError::UnsupportedGrantType);
        }
        let (Some(username), Some(password)) = (members.username, members.password) else {
            return Err(GrantError::Missing);
        };
        if username.len() > MAX_USERNAME_LEN || password.len() > MAX_PASSWORD_LEN {
            return Err(GrantError::TooLong);
        }
        Ok(Self {
            username,
            password,
            scope: members.scope,
        })
    }

    /// The resource owner's username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password, to verify with [`Passwords`](super::Passwords) or
    /// [`LoginThrottle::verify`](crate::throttle::LoginThrottle::verify).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The scope asked for (RFC 6749 section 3.3), if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

/// A form body's parameters; an unknown one is ignored (RFC 6749 section 3.2), one given
/// twice refused.
fn form(body: &[u8]) -> Result<Members, GrantError> {
    let mut members = Members::default();
    for (name, value) in form_urlencoded::parse(body) {
        let slot = match &*name {
            "username" => &mut members.username,
            "password" => &mut members.password,
            "grant_type" => &mut members.grant_type,
            "scope" => &mut members.scope,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(GrantError::Malformed);
        }
    }
    Ok(members)
}

impl fmt::Debug for PasswordGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordGrant")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}
