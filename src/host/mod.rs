//! Host side effects live behind the [`Host`] trait.
