//! Which connection carries a channel: the pool of authenticated connections per (target,
//! upstream user), their channel limits, congestion, rotation, and the spare channel each keeps
//! open ahead of need. How a connection is made and checked is the parent module's job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::{connect, PinnedHostKey, TargetAccess, UpstreamChannel, UpstreamError};

/// Connections kept per (target, user) at most; beyond this, channel opens wait for a free slot.
pub const MAX_CONNECTIONS_PER_TARGET: usize = 8;
/// Channel-open attempts before giving up (each may pick another connection).
const OPEN_ATTEMPTS: usize = 4;
/// Channel data (both ways) after which a connection takes no new channels. Far below
/// [`crate::rekey::REKEY_AFTER_BYTES`], so the channels still open on a rotated connection would
/// have to carry many more gigabytes before russh re-keys it.
pub const ROTATE_AFTER_BYTES: u64 = 1 << 30;
/// Age after which a connection takes no new channels: ten minutes before russh's time-based
/// re-key ([`crate::rekey::REKEY_AFTER`]), so only channels that have run that long are on it then.
pub const ROTATE_AFTER: Duration = Duration::from_secs(50 * 60);
// A rotated connection's remaining channels have gigabytes and minutes left before russh re-keys.
const _: () = assert!(ROTATE_AFTER_BYTES * 8 <= crate::rekey::REKEY_AFTER_BYTES);
const _: () = assert!(ROTATE_AFTER.as_secs() + 600 <= crate::rekey::REKEY_AFTER.as_secs());

/// What the bridges of a connection's channels tell the pool about it.
#[derive(Debug, Default)]
pub struct ConnectionLoad {
    /// Channels whose output is backed up right now. russh 0.65 grants window per connection
    /// as data arrives and then waits for room in the channel's queue, so while one channel's
    /// agent is not reading, the whole connection's packet loop waits with it: new channels
    /// are put on a connection that is not backed up (a new one if needed) instead.
    congested: AtomicUsize,
    /// Channel data carried both ways, for rotation ([`ROTATE_AFTER_BYTES`]).
    carried: AtomicU64,
}

impl ConnectionLoad {
    /// Counts `bytes` of channel data carried.
    pub fn carry(&self, bytes: usize) {
        self.carried
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Marks the connection congested until the returned guard is dropped (a channel's reader
    /// waiting for room to put the target's output).
    pub fn congestion(self: &Arc<Self>) -> Congestion {
        self.congested.fetch_add(1, Ordering::SeqCst);
        Congestion(self.clone())
    }

    fn is_congested(&self) -> bool {
        self.congested.load(Ordering::SeqCst) > 0
    }

    fn carried(&self) -> u64 {
        self.carried.load(Ordering::Relaxed)
    }
}

/// A channel reader's wait for room; the connection counts as congested while one exists.
pub struct Congestion(Arc<ConnectionLoad>);

impl Drop for Congestion {
    fn drop(&mut self) {
        self.0.congested.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a connection of this age that has carried this much should take no new channels.
fn due_for_rotation(age: Duration, carried: u64) -> bool {
    age >= ROTATE_AFTER || carried >= ROTATE_AFTER_BYTES
}

/// A spare channel older than this is closed instead of used: a target may time out session
/// channels that carry nothing (OpenSSH's `ChannelTimeout session=...`), and a channel it has
/// closed would fail the exec put on it.
const SPARE_MAX_AGE: Duration = Duration::from_secs(60);

/// A session channel opened before any agent asked for one, with the permit that counts it.
struct Spare {
    /// Open, with nothing requested on it yet.
    channel: russh::Channel<client::Msg>,
    /// Its slot on the connection, handed on to whoever takes it.
    permit: OwnedSemaphorePermit,
    /// When it was opened ([`SPARE_MAX_AGE`]).
    opened: Instant,
}

/// One authenticated SSH connection to a target.
struct Connection {
    /// russh client handle; channels are opened through it.
    handle: client::Handle<PinnedHostKey>,
    /// One permit per channel that may be open at once on this connection (a spare included).
    slots: Arc<Semaphore>,
    /// Congestion and traffic, kept up to date by the bridges of its channels.
    load: Arc<ConnectionLoad>,
    /// When it was established, for rotation ([`ROTATE_AFTER`]).
    opened: Instant,
    /// A channel opened ahead of need, so that an allowed exec goes to the target at once
    /// instead of first waiting a channel-open round trip to it. The next channel taken from
    /// this connection is this one; taking it opens the next spare in the background. Only
    /// the pool opens it, never for a particular agent, so a refused command still sends
    /// nothing to the target.
    spare: std::sync::Mutex<Option<Spare>>,
    /// Set while a spare is being opened, so that at most one open is in flight.
    refilling: AtomicBool,
    /// Set once the connection has left the pool: a spare it still holds, or one whose open
    /// completes later, is closed rather than kept (an open channel keeps a connection alive).
    retired: AtomicBool,
}

impl Connection {
    fn new(handle: client::Handle<PinnedHostKey>, max_channels: usize) -> Connection {
        Connection {
            handle,
            slots: Arc::new(Semaphore::new(max_channels)),
            load: Arc::new(ConnectionLoad::default()),
            opened: Instant::now(),
            spare: std::sync::Mutex::new(None),
            refilling: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        }
    }

    /// A free channel slot, if this connection has one.
    fn slot(self: &Arc<Self>) -> Option<(Arc<Connection>, OwnedSemaphorePermit)> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| (self.clone(), p))
    }

    fn is_congested(&self) -> bool {
        self.load.is_congested()
    }

    /// Whether this connection should take no new channels (see [`ROTATE_AFTER_BYTES`]).
    fn is_due_for_rotation(&self) -> bool {
        due_for_rotation(self.opened.elapsed(), self.load.carried())
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Option<Spare>> {
        // The slot holds no invariant a panicking holder could break.
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The spare channel, if one is ready and young enough to trust.
    fn take_spare(self: &Arc<Self>) -> Option<UpstreamChannel> {
        let spare = self.lock_spare().take()?;
        if spare.opened.elapsed() > SPARE_MAX_AGE {
            close_spare(spare);
            return None;
        }
        Some(UpstreamChannel {
            channel: spare.channel,
            permit: ChannelSlot::new(spare.permit, self),
            load: self.load.clone(),
        })
    }

    /// Opens the next spare in the background (when a channel ends, see [`ChannelSlot`]),
    /// unless one is ready or on its way, the connection is leaving the pool, or it has fewer
    /// than two free slots: a spare never takes the last one, so a caller that finds every
    /// slot busy is not left waiting behind it.
    fn refill_spare(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.retired.load(Ordering::SeqCst)
            || self.handle.is_closed()
            || self.slots.available_permits() < 2
            || self.lock_spare().is_some()
            || self.refilling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.refilling.store(false, Ordering::SeqCst);
            return;
        };
        let conn = self.clone();
        runtime.spawn(async move {
            match conn.handle.channel_open_session().await {
                Ok(channel) => {
                    let spare = Spare {
                        channel,
                        permit,
                        opened: Instant::now(),
                    };
                    *conn.lock_spare() = Some(spare);
                    // Checked after the store: whichever of this and `retire` runs second
                    // finds the spare and closes it.
                    if conn.retired.load(Ordering::SeqCst) {
                        conn.discard_spare();
                    }
                }
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    conn.limit_reached(permit, reason);
                }
                Err(err) => {
                    tracing::debug!(error = %err, "could not open a spare upstream channel");
                }
            }
            conn.refilling.store(false, Ordering::SeqCst);
        });
    }

    /// The target refused a channel while the others (spare included) were open: that is as
    /// many as it allows on this connection (OpenSSH's `MaxSessions`), so the refused slot and
    /// every free one are retired for good, and the limit is what is open now. Retiring one
    /// slot per refusal would learn a limit of 3 under a `max_channels` of 32 only after 29
    /// failed opens, more than one exec's attempts.
    fn limit_reached(&self, refused: OwnedSemaphorePermit, reason: russh::ChannelOpenFailure) {
        refused.forget();
        let retired = self.slots.forget_permits(self.slots.available_permits());
        tracing::info!(
            ?reason,
            retired_slots = retired + 1,
            "target refused a channel; this connection takes no more than it has open"
        );
    }

    /// Takes the connection out of service: no spare is kept on it from now on.
    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        self.discard_spare();
    }

    fn discard_spare(&self) {
        if let Some(spare) = self.lock_spare().take() {
            close_spare(spare);
        }
    }
}

/// Closes a spare channel in the background; its permit returns when the close is sent.
fn close_spare(spare: Spare) {
    // Without a runtime (the process is ending) the connection goes, and the channel with it.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let _ = spare.channel.close().await;
        drop(spare.permit);
    });
}

/// A channel's place on its connection. When the channel ends and this is dropped, the slot
/// returns and the connection opens its next spare, between one exec and the next rather than
/// beside the exec that took the last one (on a small target the spare's open competes with
/// starting that command).
pub struct ChannelSlot {
    /// The slot itself; `None` only while dropping.
    permit: Option<OwnedSemaphorePermit>,
    /// Weak: a channel does not keep a connection the pool has dropped in the pool's books.
    conn: std::sync::Weak<Connection>,
}

impl ChannelSlot {
    fn new(permit: OwnedSemaphorePermit, conn: &Arc<Connection>) -> ChannelSlot {
        ChannelSlot {
            permit: Some(permit),
            conn: Arc::downgrade(conn),
        }
    }
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Some(conn) = self.conn.upgrade() {
            conn.refill_spare();
        }
    }
}

/// The live connections to one (target, user); the lock makes connecting single-flight.
type TargetConnections = Mutex<Vec<Arc<Connection>>>;

/// The pool: (target, user) → live connections.
#[derive(Default)]
pub struct Pool {
    /// Connections per (target name, upstream user); the async mutex makes connecting single-flight.
    entries: Mutex<HashMap<(String, String), Arc<TargetConnections>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Opens a session channel to the target, reusing a pooled connection when one has room
    /// (its spare channel when one is ready).
    pub async fn open_channel(
        &self,
        access: &TargetAccess,
    ) -> Result<UpstreamChannel, UpstreamError> {
        let key = (access.target.name.clone(), access.target.user.clone());
        let entry = {
            let mut entries = self.entries.lock().await;
            entries.entry(key).or_default().clone()
        };
        // A few attempts: a pooled connection may have died since it was last used, or the
        // target may refuse another channel on it (its MaxSessions is below our max_channels).
        for _ in 0..OPEN_ATTEMPTS {
            let (conn, permit) = {
                let mut conns = entry.lock().await;
                // A rotated connection leaves the pool; it closes when its last channel ends
                // (each open channel keeps its russh session running).
                conns.retain(|c| {
                    let rotate = c.is_due_for_rotation();
                    if rotate && !c.handle.is_closed() {
                        tracing::info!(
                            target_name = %access.target.name,
                            carried_bytes = c.load.carried(),
                            age_secs = c.opened.elapsed().as_secs(),
                            "rotating pooled upstream connection: no new channels on it"
                        );
                    }
                    let keep = !rotate && !c.handle.is_closed();
                    if !keep {
                        c.retire();
                    }
                    keep
                });
                let ready = conns
                    .iter()
                    .filter(|c| !c.is_congested())
                    .find_map(Connection::take_spare);
                if let Some(spare) = ready {
                    return Ok(spare);
                }
                // A connection that is not backed up; at the connection limit, any with room.
                let free = conns
                    .iter()
                    .filter(|c| !c.is_congested())
                    .find_map(Connection::slot)
                    .or_else(|| {
                        (conns.len() >= MAX_CONNECTIONS_PER_TARGET)
                            .then(|| conns.iter().find_map(Connection::slot))
                            .flatten()
                    });
                match free {
                    Some(found) => found,
                    None if conns.len() < MAX_CONNECTIONS_PER_TARGET => {
                        let handle = connect(access).await?;
                        let conn = Arc::new(Connection::new(handle, access.target.max_channels));
                        conns.push(conn.clone());
                        let permit = conn.slots.clone().try_acquire_owned().map_err(|_| {
                            UpstreamError::Protocol {
                                target: access.target.name.clone(),
                                reason: "max_channels is 0".into(),
                            }
                        })?;
                        (conn, permit)
                    }
                    None => {
                        // Every connection is full: wait for a channel on the first one.
                        let conn =
                            conns
                                .first()
                                .cloned()
                                .ok_or_else(|| UpstreamError::Protocol {
                                    target: access.target.name.clone(),
                                    reason: "no connection".into(),
                                })?;
                        drop(conns);
                        let permit = conn.slots.clone().acquire_owned().await.map_err(|_| {
                            UpstreamError::Protocol {
                                target: access.target.name.clone(),
                                reason: "connection closed".into(),
                            }
                        })?;
                        (conn, permit)
                    }
                }
            };
            match conn.handle.channel_open_session().await {
                Ok(channel) => {
                    return Ok(UpstreamChannel {
                        channel,
                        permit: ChannelSlot::new(permit, &conn),
                        load: conn.load.clone(),
                    });
                }
                // The connection is alive but full by the target's count; try elsewhere.
                Err(russh::Error::ChannelOpenFailure(reason)) => conn.limit_reached(permit, reason),
                Err(err) => {
                    tracing::warn!(target_name = %access.target.name, error = %err, "upstream connection lost; reconnecting");
                    let _ = conn
                        .handle
                        .disconnect(russh::Disconnect::ByApplication, "", "")
                        .await;
                    entry.lock().await.retain(|c| !Arc::ptr_eq(c, &conn));
                }
            }
        }
        Err(UpstreamError::Protocol {
            target: access.target.name.clone(),
            reason: "could not open a channel".into(),
        })
    }

    /// Closes every pooled connection (shutdown).
    pub async fn close_all(&self) {
        let entries = self.entries.lock().await;
        for entry in entries.values() {
            for conn in entry.lock().await.iter() {
                let _ = conn
                    .handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "gatehouse shutting down",
                        "",
                    )
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_rotate_on_traffic_or_age() {
        assert!(!due_for_rotation(Duration::ZERO, 0));
        assert!(!due_for_rotation(
            ROTATE_AFTER - Duration::from_secs(1),
            ROTATE_AFTER_BYTES - 1
        ));
        assert!(due_for_rotation(Duration::ZERO, ROTATE_AFTER_BYTES));
        assert!(due_for_rotation(ROTATE_AFTER, 0));
    }

    #[test]
    fn load_counts_traffic_and_congestion_guards() {
        let load = Arc::new(ConnectionLoad::default());
        load.carry(1000);
        load.carry(24);
        assert_eq!(load.carried(), 1024);
        assert!(!load.is_congested());
        let a = load.congestion();
        let b = load.congestion();
        assert!(load.is_congested());
        drop(a);
        assert!(load.is_congested());
        drop(b);
        assert!(!load.is_congested());
    }
}
