//! Which `jsonwebtoken` crypto provider signs and verifies.
//!
//! `jsonwebtoken` 12 picks its provider from its crate features and panics on the first
//! `encode`/`decode` when both `rust_crypto` and `aws_lc_rs` (or neither) are enabled anywhere
//! in the build. A dependency graph that enables both is easy to get by accident, so every
//! key constructor of this crate calls [`ensure_provider`], which installs this crate's own
//! choice when the features alone do not decide. A provider the application installed
//! itself is left alone.
//!
//! The choice follows this crate's features: `aws-lc-rs` when its feature is on (faster RSA
//! and ECDSA), otherwise the pure-Rust `rust_crypto` (no C toolchain, and the faster HMAC).

use jsonwebtoken::crypto::CryptoProvider;

pub(crate) fn ensure_provider() {
    if CryptoProvider::try_get_default().is_none() {
        // Losing the race to another thread that installs one is fine: some provider is set.
        let _ = preferred().install_default();
    }
}

#[cfg(feature = "aws-lc-rs")]
fn preferred() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
}

#[cfg(not(feature = "aws-lc-rs"))]
fn preferred() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_always_selected() {
        ensure_provider();
        // With both backends compiled (`--all-features`) the features alone decide nothing;
        // the explicit installation must have picked ours.
        let installed = CryptoProvider::try_get_default().expect("a provider is installed");
        assert!(std::ptr::eq(installed, preferred()));
    }
}
