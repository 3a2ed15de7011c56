//! STUB
use super::ignore::CopyError;
pub fn resolve_chown(_root: &std::path::Path, _s: &str) -> Result<(u32, u32), CopyError> {
    Err(CopyError)
}
pub fn resolve_user(
    _root: &std::path::Path,
    _s: &str,
) -> Result<crate::pipeline::chroot::RunAs, CopyError> {
    Err(CopyError)
}
