//! The Docker Engine edge of rcross: where an engine listens, the build context sent into a
//! build container, and the safe unpacking of what comes back.

pub mod context;
pub mod endpoint;
pub mod unpack;

pub use endpoint::{Endpoint, EndpointError, TlsEnv, TlsFiles};
