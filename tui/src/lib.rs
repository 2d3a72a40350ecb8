//! gatehouse's terminal screens: the reviewer console (pending approvals, live sessions,
//! recordings) and the recording replay view.
//!
//! This crate knows screens and nothing else: no SSH, no storage, no gatehouse types. The
//! server fills in the plain data types of [`model`] ([`PendingItem`], [`LiveSession`],
//! [`RecordingItem`]), feeds the raw bytes it reads from the reviewer's channel to
//! [`ConsoleApp::handle_input`], carries out the [`Action`]s it gets back, and writes the bytes of
//! [`ConsoleApp::render`] to the channel. Frames are ratatui buffers turned into ANSI escape
//! sequences here ([`frame`]), diffed against the previous frame so a refresh costs a few bytes.
//!
//! [`ReplayApp`] plays an asciicast v2 file the same way, inside the console or on a local
//! terminal (`gatehouse replay FILE.cast`).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod console;
pub mod frame;
pub mod keys;
pub mod model;
pub mod replay;

pub use console::ConsoleApp;
pub use frame::{enter_screen, leave_screen};
pub use keys::{Key, KeyParser};
pub use model::{Action, LiveSession, PendingItem, RecordingItem};
pub use replay::{Cast, ReplayApp, ReplayError};
