//! STUB
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct CopyError;
pub struct DockerIgnore;
impl DockerIgnore {
    pub fn load(_c: &std::path::Path, _d: &std::path::Path) -> Result<DockerIgnore, CopyError> {
        Ok(DockerIgnore)
    }
    pub fn is_excluded(&self, _r: &str) -> bool {
        false
    }
}
