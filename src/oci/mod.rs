//! The write side of OCI images: reproducible layers, image configs, manifests, indexes, the OCI
//! image layout on disk and its `oci-archive` tar form.
//!
//! Everything here is a pure function of its inputs: the same files, options and
//! `SOURCE_DATE_EPOCH` give the same bytes and digests on every run and every machine, whatever
//! the number of cores. Nothing here prints or reads the environment; callers pass the values
//! (see [`source_date_epoch`]).
//!
//! The JSON documents are written with this crate's own serde types rather than oci-spec's: the
//! digest of an index is a promise to users, so the byte layout (field order, omitted empties)
//! must be ours and must not move when a dependency is upgraded; oci-spec's builders would also
//! add derive_builder, getset and strum to a build that shares two cores.

mod docker;
pub(crate) mod documents;
mod error;
mod gzip;
mod layer;
pub(crate) mod layout;

pub use crate::image::layout::{missing_blob_message, remote_blob_source, REMOTE_BLOBS_FILE};
pub use crate::image::model::REF_NAME_ANNOTATION;
pub use crate::image::sha256_digest;
pub use documents::{
    image_config, image_config_with, image_index, image_manifest, rfc3339_utc, ConfigExtras,
    Descriptor, HealthConfig, History, ImageSpec, OciPlatform, RunConfig,
};
pub use error::OciError;
pub use gzip::GZIP_BLOCK_SIZE;
pub(crate) use layer::{append_file, base_header, sink_error};
pub use layer::{
    diff_id, entries_from_dir, source_date_epoch, write_layer, write_tar_layer, Compressor,
    FileContent, Layer, LayerEntry, LayerEntryKind, LayerOptions,
};
#[cfg(test)]
pub(crate) use layout::test_two_platform_layout;
pub use layout::OciLayout;

/// `application/vnd.oci.image.index.v1+json`
pub const MEDIA_TYPE_INDEX: &str = crate::image::model::MEDIA_TYPE_OCI_INDEX;
/// `application/vnd.oci.image.manifest.v1+json`
pub const MEDIA_TYPE_MANIFEST: &str = crate::image::model::MEDIA_TYPE_OCI_MANIFEST;
/// `application/vnd.oci.image.config.v1+json`
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`
pub const MEDIA_TYPE_LAYER_GZIP: &str = crate::image::model::MEDIA_TYPE_OCI_LAYER_GZIP;
/// `application/vnd.oci.image.layer.v1.tar+zstd`
pub const MEDIA_TYPE_LAYER_ZSTD: &str = crate::image::model::MEDIA_TYPE_OCI_LAYER_ZSTD;
