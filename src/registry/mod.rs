//! The OCI distribution API: image references, a blocking registry client, [`RegistryImage`],
//! which serves one reference through [`crate::image::ImageSource`], and pushing images
//! ([`Client::push_image`]); mirrors tried before an image's own registry ([`open_image`]).
//!
//! All network traffic is in [`Client`]; nothing here prints.

mod auth;
mod client;
mod credentials;
mod error;
mod layout_push;
pub mod login;
pub mod mirrors;
mod push;
mod reference;
mod source;

pub use auth::{server_url, Credentials, DockerConfig, Secret};
pub use client::{
    digest_of, BlobReader, Client, ClientOptions, Manifest, DEFAULT_MAX_MANIFEST_BYTES,
    DEFAULT_RETRY_TIMEOUT, MAX_TOKEN_RESPONSE_BYTES, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
pub use credentials::{
    CredentialStore, HelperOutput, HelperRunError, HelperRunner, ProcessRunner, SecretWithSource,
    Source, HELPER_PREFIX, HELPER_TIMEOUT, MAX_HELPER_OUTPUT,
};
pub use error::RegistryError;
pub use layout_push::layout_push_plan;
pub use mirrors::{
    open_image, Candidate, CandidateFailure, MirrorError, MirrorLocation, MirroredImage, Mirrors,
    MIRROR_RETRY_TIMEOUT, MIRROR_TIMEOUT, REGISTRIES_CONFIG_ENV, SYSTEM_REGISTRIES_CONFIG,
};
pub use push::{
    all_tags, report_present, BlobOutcome, BlobSource, ImagePush, PushBlob, PushManifest,
    PushOptions, PushReport, MAX_CHUNK_SIZE,
};
pub use reference::{
    looks_like_image_reference, Reference, ReferenceError, DEFAULT_TAG, DOCKER_HUB,
    DOCKER_HUB_API_HOST, DOCKER_HUB_AUTH_KEY,
};
pub use source::RegistryImage;
