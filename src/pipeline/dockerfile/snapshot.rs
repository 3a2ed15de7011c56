//! STUB
use std::path::Path;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct SnapshotError;
pub struct Snapshot;
pub struct Changes;
impl Changes {
    pub fn is_empty(&self) -> bool {
        true
    }
    pub fn paths(&self) -> Vec<String> {
        vec![]
    }
}
pub fn snapshot(_r: &Path, _s: &dyn Fn(&str) -> bool) -> Result<Snapshot, SnapshotError> {
    Ok(Snapshot)
}
pub fn changes(_a: &Snapshot, _b: &Snapshot) -> Changes {
    Changes
}
pub struct DiffLayerOptions<'a> {
    pub layer: crate::oci::LayerOptions,
    pub to_image_ids: &'a dyn Fn(u32, u32) -> (u32, u32),
}
pub fn write_diff_layer<W: std::io::Write + Send>(
    _r: &Path,
    _a: &Snapshot,
    _c: &Changes,
    _o: &DiffLayerOptions,
    _w: W,
) -> Result<(crate::oci::Layer, W), SnapshotError> {
    Err(SnapshotError)
}
