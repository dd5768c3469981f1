//! Boilerplate shared by the middleware services, after tower-http's `macros.rs`.

/// `get_ref`, `get_mut` and `into_inner` for a service whose inner service is the field
/// `inner`.
macro_rules! define_inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
