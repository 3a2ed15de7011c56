//! STUB
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct MirrorError;
pub struct Mirrors;
impl Mirrors {
    pub fn load() -> Result<Mirrors, MirrorError> {
        Ok(Mirrors)
    }
}
pub fn open_image(
    c: &super::Client,
    r: &super::Reference,
    _m: &Mirrors,
) -> Result<(super::RegistryImage, String), MirrorError> {
    Ok((
        super::RegistryImage::new(c.clone(), r.clone()),
        r.to_string(),
    ))
}
