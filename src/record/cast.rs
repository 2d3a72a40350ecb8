//! asciicast v2 recording writer.
