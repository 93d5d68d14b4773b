//! How the application proves its identity to Entra ID: a client assertion from a source the
//! caller supplies, or one signed here with the application's certificate.

pub(crate) mod assertion;
pub(crate) mod certificate;
