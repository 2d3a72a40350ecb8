//! Who is connecting: the user CA that issues certificates and the checks that accept them.

pub mod ca;
pub mod oidc;
pub mod revocation;
