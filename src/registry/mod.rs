//! The read side of the OCI distribution API: image references, a blocking registry client, and
//! `RegistryImage`, which serves one reference through [`crate::image::ImageSource`].
//!
//! All network traffic is in `Client`; nothing here prints.

mod reference;

pub use reference::{
    looks_like_image_reference, Reference, ReferenceError, DEFAULT_TAG, DOCKER_HUB,
    DOCKER_HUB_API_HOST, DOCKER_HUB_AUTH_KEY,
};
