//! Session recordings (asciicast v2) and the streaming redaction applied before anything is
//! recorded or shown to an agent.

pub mod cast;
pub mod mask;
