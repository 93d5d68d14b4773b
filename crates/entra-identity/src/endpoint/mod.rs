//! Everything between a resolved request and Entra ID's answer: which authority and tenant
//! are asked, whether the authority is known (instance discovery), the form that is posted,
//! the HTTP exchange with its retries, and how the answer is read.

pub(crate) mod authority;
pub(crate) mod discovery;
pub(crate) mod http;
pub(crate) mod protocol;
pub(crate) mod tenant;
