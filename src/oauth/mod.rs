//! The token side of the ORDS model. Our own: the client-credentials endpoint
//! (`endpoint`), the JWTs it mints and the proxy verifies (`token`), signing and
//! verification keys (`keys`), client secrets and where argon2id runs (`secret`), and the
//! throttle on failed attempts (`throttle`). Identity providers' (SPEC §9): an issuer's
//! claim rules (`issuer`), JWK Sets (`jwks`), the cell holding an issuer's keys
//! (`keycell`) and the tasks that fetch them (`jwks_fetch`).

pub mod endpoint;
pub mod issuer;
pub mod jwks;
pub mod jwks_fetch;
pub mod keycell;
pub mod keys;
pub mod secret;
pub mod throttle;
pub mod token;
