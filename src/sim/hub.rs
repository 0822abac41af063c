//! The Stream gateway's state: the tickets `connections/open` issued, the
//! open WebSocket connections of each app, the events waiting for an ack,
//! the gateway's faults and counters. No I/O: a connection is the sending
//! half of a channel its WebSocket task reads, and the clock and the random
//! numbers are passed in, so every rule is unit-testable. The HTTP and
//! WebSocket side is `gateway.rs`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::frames::{self, Answer, EventHeaders};

/// How long a ticket is good for (DingTalk: 90 s, one connection).
pub const TICKET_TTL: Duration = Duration::from_secs(90);

/// The most events kept waiting for an ack per app; the oldest go first.
pub const MAX_PENDING_PER_APP: usize = 10_000;

/// The id of one WebSocket connection.
pub type ConnId = u64;

/// What a connection's WebSocket task is told to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    /// Send this text frame.
    Text(String),
    /// Send a WebSocket close frame and end.
    Close,
    /// End without a word: the TCP connection just drops.
    Drop,
}

/// Why a ticket was refused at the WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("unknown or already used ticket")]
    Unknown,
    #[error("expired ticket")]
    Expired,
}

/// The gateway's fault settings (`PUT /_sim/stream/faults`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StreamFaults {
    /// An event not acked this long after its delivery is delivered again.
    pub redeliver_after_ms: u64,
    /// An event is given up this long after it was produced, acked or not.
    pub redelivery_window_ms: u64,
    /// A SYSTEM ping on each connection this often; 0 = never.
    pub ping_interval_ms: u64,
    /// After a SYSTEM disconnect, the connection closes this much later.
    pub disconnect_grace_ms: u64,
    /// The next N events are delivered twice at once (same `eventId`).
    pub duplicate_next: u32,
    /// The next N acks are lost: their events are redelivered.
    pub ignore_acks_next: u32,
    /// The next N `connections/open` calls fail with HTTP 500 `systemBusy`.
    pub refuse_open_next: u32,
    /// The next N events are lost: never delivered (a quota run out, a
    /// push DingTalk gave up on).
    pub drop_next: u32,
    /// Each event's first delivery waits this long.
    pub delay_ms: u64,
    /// And up to this much more, at random per event: events produced
    /// closer together than this may arrive in another order.
    pub delay_jitter_ms: u64,
}

impl Default for StreamFaults {
    fn default() -> Self {
        Self {
            redeliver_after_ms: 5_000,
            redelivery_window_ms: 300_000,
            ping_interval_ms: 30_000,
            disconnect_grace_ms: 10_000,
            duplicate_next: 0,
            ignore_acks_next: 0,
            refuse_open_next: 0,
            drop_next: 0,
            delay_ms: 0,
            delay_jitter_ms: 0,
        }
    }
}

/// A `PUT /_sim/stream/faults` body: only the fields given change.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamFaultsPatch {
    pub redeliver_after_ms: Option<u64>,
    pub redelivery_window_ms: Option<u64>,
    pub ping_interval_ms: Option<u64>,
    pub disconnect_grace_ms: Option<u64>,
    pub duplicate_next: Option<u32>,
    pub ignore_acks_next: Option<u32>,
    pub refuse_open_next: Option<u32>,
    pub drop_next: Option<u32>,
    pub delay_ms: Option<u64>,
    pub delay_jitter_ms: Option<u64>,
}

/// The longest delay a knob accepts: one day.
pub const MAX_STREAM_DELAY_MS: u64 = 86_400_000;

impl StreamFaultsPatch {
    /// Why this patch cannot be applied, if it cannot (answered with 400).
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("redeliverAfterMs", self.redeliver_after_ms),
            ("redeliveryWindowMs", self.redelivery_window_ms),
            ("pingIntervalMs", self.ping_interval_ms),
            ("disconnectGraceMs", self.disconnect_grace_ms),
            ("delayMs", self.delay_ms),
            ("delayJitterMs", self.delay_jitter_ms),
        ] {
            if let Some(v) = v
                && v > MAX_STREAM_DELAY_MS
            {
                return Err(format!(
                    "{name} must be at most {MAX_STREAM_DELAY_MS}, got {v}"
                ));
            }
        }
        if self.redeliver_after_ms == Some(0) {
            return Err("redeliverAfterMs must be at least 1".into());
        }
        Ok(())
    }
}

impl StreamFaults {
    /// Applies the fields present in `patch`.
    pub fn apply(&mut self, patch: StreamFaultsPatch) {
        let StreamFaultsPatch {
            redeliver_after_ms,
            redelivery_window_ms,
            ping_interval_ms,
            disconnect_grace_ms,
            duplicate_next,
            ignore_acks_next,
            refuse_open_next,
            drop_next,
            delay_ms,
            delay_jitter_ms,
        } = patch;
        set(&mut self.redeliver_after_ms, redeliver_after_ms);
        set(&mut self.redelivery_window_ms, redelivery_window_ms);
        set(&mut self.ping_interval_ms, ping_interval_ms);
        set(&mut self.disconnect_grace_ms, disconnect_grace_ms);
        set(&mut self.duplicate_next, duplicate_next);
        set(&mut self.ignore_acks_next, ignore_acks_next);
        set(&mut self.refuse_open_next, refuse_open_next);
        set(&mut self.drop_next, drop_next);
        set(&mut self.delay_ms, delay_ms);
        set(&mut self.delay_jitter_ms, delay_jitter_ms);
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// What the gateway counted since the start or the last reset
/// (`GET /_sim/stream`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// `connections/open` answered with a ticket.
    pub tickets_issued: u64,
    /// `connections/open` refused (credentials, body, `refuseOpenNext`).
    pub opens_refused: u64,
    /// WebSocket attempts refused for their ticket (unknown, used, expired).
    pub tickets_refused: u64,
    /// WebSocket connections accepted.
    pub connections_opened: u64,
    /// Events produced by admin changes, one per receiving app.
    pub events_pushed: u64,
    /// EVENT frames sent, first deliveries, redeliveries and duplicates.
    pub deliveries: u64,
    /// Of the deliveries, those of an event sent before.
    pub redeliveries: u64,
    /// Events acked (`code` 200, status `SUCCESS`).
    pub acks: u64,
    /// Acks dropped by `ignoreAcksNext`.
    pub acks_ignored: u64,
    /// Answers asking for a later redelivery (`LATER`, or a code other than 200).
    pub nacks: u64,
    /// Events given up after the redelivery window.
    pub expired: u64,
    /// Events lost by `dropNext`.
    pub dropped: u64,
    pub system_pings: u64,
    /// Answers to a SYSTEM ping echoing its data.
    pub pongs: u64,
    /// WebSocket pings from clients.
    pub ws_pings: u64,
    /// SYSTEM disconnects sent.
    pub disconnects_sent: u64,
    /// Connections dropped without a SYSTEM disconnect (admin).
    pub connections_dropped: u64,
    /// Open connections now, by appKey (an app without one is absent).
    pub open_connections: BTreeMap<String, u64>,
    /// The most connections an app had open at once, by appKey (2 after a
    /// SYSTEM disconnect answered by opening the new connection first).
    pub peak_connections: BTreeMap<String, u64>,
    /// Events waiting for an ack now, by appKey.
    pub pending: BTreeMap<String, u64>,
}

/// A ticket and the app it opens a connection for.
#[derive(Clone, Debug)]
struct Ticket {
    app_key: String,
    expires_at: Instant,
}

/// One open connection.
#[derive(Debug)]
struct Conn {
    app_key: String,
    tx: UnboundedSender<Outbound>,
    /// Told to go (SYSTEM disconnect): no new deliveries; closes at this time.
    closes_at: Option<Instant>,
    next_ping: Option<Instant>,
}

/// An event waiting for its ack.
#[derive(Clone, Debug)]
struct Pending {
    app_key: String,
    corp_id: String,
    unified_app_id: String,
    event_id: String,
    event_type: String,
    data: Value,
    born_ms: i64,
    pushed_at: Instant,
    /// Not delivered before this (`delayMs`, `delayJitterMs`).
    not_before: Instant,
    /// Sent twice at its first delivery (`duplicateNext`).
    twice: bool,
    /// The connection its first delivery goes to, if still live (a suite's
    /// `suite_ticket` goes to the connection that just opened).
    prefer: Option<ConnId>,
    /// The last delivery: the connection and when (`None`: to deliver now).
    sent: Option<(ConnId, Instant)>,
    /// Every messageId it was sent under: an ack of any of them counts.
    message_ids: Vec<String>,
}

/// An event to push to one app.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub app_key: String,
    pub corp_id: String,
    pub unified_app_id: String,
    pub event_type: String,
    pub data: Value,
    /// Production time, milliseconds since the epoch.
    pub born_ms: i64,
}

/// The gateway's whole state.
#[derive(Debug, Default)]
pub struct Hub {
    tickets: HashMap<String, Ticket>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    pending: Vec<Pending>,
    /// Open SYSTEM pings: messageId → (connection, opaque).
    pings: HashMap<String, (ConnId, String)>,
    pub faults: StreamFaults,
    stats: StreamStats,
}

/// A random id of `len` lowercase letters and digits.
pub fn random_id(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| rng.alphanumeric().to_ascii_lowercase())
        .collect()
}

/// Milliseconds since the epoch, now (for frame headers).
fn wall_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Hub {
    /// A hub with `faults`.
    pub fn new(faults: StreamFaults) -> Self {
        Self {
            faults,
            ..Self::default()
        }
    }

    /// Whether this `connections/open` is failed by `refuseOpenNext`
    /// (counts it down).
    pub fn take_open_refusal(&mut self) -> bool {
        if self.faults.refuse_open_next > 0 {
            self.faults.refuse_open_next -= 1;
            self.stats.opens_refused += 1;
            return true;
        }
        false
    }

    /// Counts a refused `connections/open`.
    pub fn open_refused(&mut self) {
        self.stats.opens_refused += 1;
    }

    /// Records `ticket` for `app_key`, good for [`TICKET_TTL`] from `now`.
    pub fn issue_ticket(&mut self, ticket: String, app_key: &str, now: Instant) {
        self.tickets.retain(|_, t| t.expires_at > now);
        self.tickets.insert(
            ticket,
            Ticket {
                app_key: app_key.to_owned(),
                expires_at: now + TICKET_TTL,
            },
        );
        self.stats.tickets_issued += 1;
    }

    /// Uses `ticket` up: the app it was issued for, if it is valid at `now`.
    pub fn take_ticket(&mut self, ticket: &str, now: Instant) -> Result<String, TicketError> {
        let result = match self.tickets.remove(ticket) {
            None => Err(TicketError::Unknown),
            Some(t) if t.expires_at <= now => Err(TicketError::Expired),
            Some(t) => Ok(t.app_key),
        };
        if result.is_err() {
            self.stats.tickets_refused += 1;
        }
        result
    }

    /// Registers an open connection of `app_key` and delivers what waits.
    pub fn connect(
        &mut self,
        app_key: &str,
        tx: UnboundedSender<Outbound>,
        rng: &mut fastrand::Rng,
        now: Instant,
    ) -> ConnId {
        self.next_conn += 1;
        let id = self.next_conn;
        let next_ping = self.ping_interval().map(|i| now + i);
        self.conns.insert(
            id,
            Conn {
                app_key: app_key.to_owned(),
                tx,
                closes_at: None,
                next_ping,
            },
        );
        self.stats.connections_opened += 1;
        let open = self.conns.values().filter(|c| c.app_key == app_key).count() as u64;
        let peak = self
            .stats
            .peak_connections
            .entry(app_key.to_owned())
            .or_default();
        *peak = (*peak).max(open);
        self.tick(rng, now);
        id
    }

    /// A connection ended: what was sent on it and not acked is delivered
    /// again, on another connection or the next one.
    pub fn disconnected(&mut self, conn: ConnId, rng: &mut fastrand::Rng, now: Instant) {
        self.conns.remove(&conn);
        self.pings.retain(|_, (c, _)| *c != conn);
        for p in &mut self.pending {
            if matches!(p.sent, Some((c, _)) if c == conn) {
                p.sent = None;
            }
        }
        self.tick(rng, now);
    }

    /// Pushes an event to one open connection of its app, chosen at random
    /// (or keeps it until one opens).
    pub fn push(&mut self, event: NewEvent, rng: &mut fastrand::Rng, now: Instant) {
        self.push_to(event, None, rng, now);
    }

    /// Like [`Hub::push`], the first delivery on connection `prefer` while
    /// it is live.
    pub fn push_to(
        &mut self,
        event: NewEvent,
        prefer: Option<ConnId>,
        rng: &mut fastrand::Rng,
        now: Instant,
    ) {
        let same_app = self
            .pending
            .iter()
            .filter(|p| p.app_key == event.app_key)
            .count();
        if same_app >= MAX_PENDING_PER_APP
            && let Some(oldest) = self.pending.iter().position(|p| p.app_key == event.app_key)
        {
            self.pending.remove(oldest);
            self.stats.expired += 1;
        }
        self.stats.events_pushed += 1;
        if self.faults.drop_next > 0 {
            self.faults.drop_next -= 1;
            self.stats.dropped += 1;
            return;
        }
        let delay = self.faults.delay_ms + rng.u64(..=self.faults.delay_jitter_ms);
        let twice = self.faults.duplicate_next > 0;
        if twice {
            self.faults.duplicate_next -= 1;
        }
        self.pending.push(Pending {
            app_key: event.app_key,
            corp_id: event.corp_id,
            unified_app_id: event.unified_app_id,
            event_id: random_id(rng, 32),
            event_type: event.event_type,
            data: event.data,
            born_ms: event.born_ms,
            pushed_at: now,
            not_before: now + Duration::from_millis(delay),
            twice,
            prefer,
            sent: None,
            message_ids: Vec::new(),
        });
        let index = self.pending.len() - 1;
        self.deliver(index, rng, now);
    }

    /// Sends pending event `index` to a random live connection of its app,
    /// under a new messageId; nothing when the app has none.
    fn deliver(&mut self, index: usize, rng: &mut fastrand::Rng, now: Instant) {
        let Some(p) = self.pending.get(index) else {
            return;
        };
        if now < p.not_before {
            return;
        }
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.app_key == p.app_key && c.closes_at.is_none())
            .map(|(id, _)| *id)
            .collect();
        if live.is_empty() {
            return;
        }
        let conn = match p
            .prefer
            .filter(|c| p.message_ids.is_empty() && live.contains(c))
        {
            Some(c) => c,
            None => live[rng.usize(..live.len())],
        };
        let message_id = random_id(rng, 24);
        let frame = frames::event(
            &EventHeaders {
                message_id: &message_id,
                event_id: &p.event_id,
                event_type: &p.event_type,
                born_ms: p.born_ms,
                corp_id: &p.corp_id,
                app_key: &p.app_key,
                unified_app_id: &p.unified_app_id,
            },
            &p.data,
            wall_ms(),
        );
        let again = !p.message_ids.is_empty();
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.tx.send(Outbound::Text(frame.to_string()));
        }
        self.stats.deliveries += 1;
        if again {
            self.stats.redeliveries += 1;
        }
        let p = &mut self.pending[index];
        p.message_ids.push(message_id);
        p.sent = Some((conn, now));
        if std::mem::take(&mut p.twice) {
            // The duplicate goes out at once: not a redelivery of a lost ack.
            p.sent = None;
            self.deliver(index, rng, now);
        }
    }

    /// Forgets the events of `event_type` waiting for `app_key` (a suite's
    /// older `suite_ticket`s, superseded by a newer one); answers how many.
    pub fn withdraw(&mut self, app_key: &str, event_type: &str) -> usize {
        let before = self.pending.len();
        self.pending
            .retain(|p| !(p.app_key == app_key && p.event_type == event_type));
        before - self.pending.len()
    }

    /// Whether `conn` is an open connection of `app_key`.
    pub fn is_connection_of(&self, conn: ConnId, app_key: &str) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.app_key == app_key)
    }

    /// A text frame from connection `conn`: an ack of an event, an answer
    /// to a SYSTEM ping, or something the gateway ignores.
    pub fn answer(&mut self, conn: ConnId, text: &str) {
        let Some(answer) = frames::read_answer(text) else {
            return;
        };
        if let Some((_, opaque)) = self.pings.remove(&answer.message_id) {
            if frames::echoes(&answer, &opaque) {
                self.stats.pongs += 1;
            }
            return;
        }
        self.ack(conn, &answer);
    }

    fn ack(&mut self, _conn: ConnId, answer: &Answer) {
        let Some(index) = self
            .pending
            .iter()
            .position(|p| p.message_ids.contains(&answer.message_id))
        else {
            return;
        };
        let success = answer.ok && answer.status.as_deref().is_none_or(|s| s == "SUCCESS");
        if !success {
            // LATER: delivered again after the usual delay.
            self.stats.nacks += 1;
            return;
        }
        if self.faults.ignore_acks_next > 0 {
            self.faults.ignore_acks_next -= 1;
            self.stats.acks_ignored += 1;
            return;
        }
        self.pending.remove(index);
        self.stats.acks += 1;
    }

    /// Counts a WebSocket ping from a client.
    pub fn ws_ping(&mut self) {
        self.stats.ws_pings += 1;
    }

    fn ping_interval(&self) -> Option<Duration> {
        (self.faults.ping_interval_ms > 0)
            .then(|| Duration::from_millis(self.faults.ping_interval_ms))
    }

    /// What is due at `now`: events past the redelivery window given up,
    /// undelivered and unacked ones (past `redeliverAfterMs`) delivered,
    /// SYSTEM pings sent, connections told to go closed.
    pub fn tick(&mut self, rng: &mut fastrand::Rng, now: Instant) {
        let window = Duration::from_millis(self.faults.redelivery_window_ms);
        let before = self.pending.len();
        self.pending
            .retain(|p| now.saturating_duration_since(p.pushed_at) <= window);
        self.stats.expired += (before - self.pending.len()) as u64;
        let again = Duration::from_millis(self.faults.redeliver_after_ms);
        for index in 0..self.pending.len() {
            let due = match self.pending[index].sent {
                None => true,
                Some((conn, at)) => {
                    now.saturating_duration_since(at) >= again || !self.conns.contains_key(&conn)
                }
            };
            if due {
                self.deliver(index, rng, now);
            }
        }
        let interval = self.ping_interval();
        let mut closing = Vec::new();
        let mut pings = Vec::new();
        for (id, c) in &mut self.conns {
            if c.closes_at.is_some_and(|at| at <= now) {
                closing.push(*id);
                continue;
            }
            match (interval, c.next_ping) {
                (Some(i), Some(at)) if at <= now => {
                    c.next_ping = Some(now + i);
                    pings.push(*id);
                }
                (Some(i), None) => c.next_ping = Some(now + i),
                (None, _) => c.next_ping = None,
                _ => {}
            }
        }
        for id in pings {
            let message_id = random_id(rng, 24);
            let opaque = random_id(rng, 16);
            let frame = frames::ping(&message_id, &opaque, wall_ms());
            if let Some(c) = self.conns.get(&id) {
                let _ = c.tx.send(Outbound::Text(frame.to_string()));
            }
            self.pings.insert(message_id, (id, opaque));
            self.stats.system_pings += 1;
        }
        for id in closing {
            if let Some(c) = self.conns.get(&id) {
                let _ = c.tx.send(Outbound::Close);
            }
        }
    }

    /// Ends the open connections of `app_key` (every app's when `None`):
    /// with a SYSTEM disconnect and a close `disconnectGraceMs` later, or
    /// dropped at once without a word. Answers how many.
    pub fn disconnect(
        &mut self,
        app_key: Option<&str>,
        system_message: bool,
        reason: &str,
        rng: &mut fastrand::Rng,
        now: Instant,
    ) -> usize {
        let grace = Duration::from_millis(self.faults.disconnect_grace_ms);
        let mut n = 0;
        for c in self.conns.values_mut() {
            if app_key.is_some_and(|k| k != c.app_key) || c.closes_at.is_some() {
                continue;
            }
            n += 1;
            if system_message {
                let frame = frames::disconnect(&random_id(rng, 24), reason, wall_ms());
                let _ = c.tx.send(Outbound::Text(frame.to_string()));
                c.closes_at = Some(now + grace);
                self.stats.disconnects_sent += 1;
            } else {
                let _ = c.tx.send(Outbound::Drop);
                self.stats.connections_dropped += 1;
            }
        }
        n
    }

    /// Drops every connection (the simulator stops).
    pub fn drop_all(&mut self) {
        for c in self.conns.values() {
            let _ = c.tx.send(Outbound::Drop);
        }
    }

    /// Back to `faults`: tickets, pending events and counters cleared; open
    /// connections stay open.
    pub fn reset(&mut self, faults: StreamFaults) {
        self.tickets.clear();
        self.pending.clear();
        self.pings.clear();
        self.faults = faults;
        self.stats = StreamStats::default();
    }

    /// The counters, with the open connections and pending events now.
    pub fn stats(&self) -> StreamStats {
        let mut stats = self.stats.clone();
        for c in self.conns.values() {
            *stats.open_connections.entry(c.app_key.clone()).or_default() += 1;
        }
        for p in &self.pending {
            *stats.pending.entry(p.app_key.clone()).or_default() += 1;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::{Action, Seen, decide, parse_frame};
    use serde_json::json;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    fn event() -> NewEvent {
        NewEvent {
            app_key: "k".into(),
            corp_id: "c".into(),
            unified_app_id: "u".into(),
            event_type: "user_leave_org".into(),
            data: json!({"userId": ["u1"]}),
            born_ms: 1,
        }
    }

    fn texts(rx: &mut UnboundedReceiver<Outbound>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            if let Outbound::Text(t) = o {
                out.push(t);
            }
        }
        out
    }

    /// The client's ack of an EVENT frame, as core decides it.
    fn ack_of(text: &str) -> String {
        let frame = parse_frame(&serde_json::from_str(text).expect("json")).expect("a frame");
        match decide(frame, &mut Seen::default(), jiff::Timestamp::UNIX_EPOCH) {
            Action::Ack { ack, .. } => ack.to_string(),
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn a_ticket_opens_one_connection_within_its_life() {
        let mut hub = Hub::default();
        let t0 = Instant::now();
        hub.issue_ticket("t1".into(), "k", t0);
        assert_eq!(hub.take_ticket("t1", t0), Ok("k".into()));
        assert_eq!(hub.take_ticket("t1", t0), Err(TicketError::Unknown));
        hub.issue_ticket("t2".into(), "k", t0);
        assert_eq!(
            hub.take_ticket("t2", t0 + TICKET_TTL),
            Err(TicketError::Expired)
        );
        assert_eq!(hub.stats().tickets_refused, 2);
    }

    #[test]
    fn an_event_waits_for_a_connection_and_is_redelivered_until_acked() {
        let mut hub = Hub::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = Instant::now();
        hub.push(event(), &mut rng, t0);
        assert_eq!(hub.stats().pending["k"], 1);
        let (tx, mut rx) = unbounded_channel();
        let conn = hub.connect("k", tx, &mut rng, t0);
        let first = texts(&mut rx);
        assert_eq!(first.len(), 1, "delivered on connect");
        hub.tick(&mut rng, t0 + Duration::from_secs(1));
        assert!(texts(&mut rx).is_empty(), "not yet due again");
        hub.tick(&mut rng, t0 + Duration::from_secs(5));
        let again = texts(&mut rx);
        assert_eq!(again.len(), 1, "redelivered after 5 s");
        assert_eq!(hub.stats().redeliveries, 1);
        // The first delivery's ack counts as well.
        hub.answer(conn, &ack_of(&first[0]));
        assert_eq!(hub.stats().acks, 1);
        assert!(hub.stats().pending.is_empty());
        hub.tick(&mut rng, t0 + Duration::from_secs(20));
        assert!(texts(&mut rx).is_empty());
    }

    #[test]
    fn events_go_to_a_live_connection_and_come_back_when_it_closes() {
        let mut hub = Hub::default();
        let mut rng = fastrand::Rng::with_seed(2);
        let t0 = Instant::now();
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        let c1 = hub.connect("k", tx1, &mut rng, t0);
        let c2 = hub.connect("k", tx2, &mut rng, t0);
        hub.disconnect(Some("k"), true, "bye", &mut rng, t0);
        let (tx3, mut rx3) = unbounded_channel();
        hub.connect("k", tx3, &mut rng, t0);
        hub.push(event(), &mut rng, t0);
        assert_eq!(texts(&mut rx1).len(), 1, "the disconnect only");
        assert_eq!(texts(&mut rx2).len(), 1, "the disconnect only");
        let delivered = texts(&mut rx3);
        assert_eq!(delivered.len(), 1);
        hub.disconnected(c1, &mut rng, t0);
        hub.disconnected(c2, &mut rng, t0);
        assert_eq!(hub.stats().open_connections["k"], 1);
        assert_eq!(hub.stats().peak_connections["k"], 3);
        assert_eq!(hub.stats().disconnects_sent, 2);
    }

    #[test]
    fn faults_duplicate_events_and_lose_acks() {
        let mut hub = Hub::default();
        hub.faults.duplicate_next = 1;
        hub.faults.ignore_acks_next = 1;
        let mut rng = fastrand::Rng::with_seed(3);
        let t0 = Instant::now();
        let (tx, mut rx) = unbounded_channel();
        let conn = hub.connect("k", tx, &mut rng, t0);
        hub.push(event(), &mut rng, t0);
        let sent = texts(&mut rx);
        assert_eq!(sent.len(), 2, "sent twice");
        let ids: Vec<Value> = sent
            .iter()
            .map(|t| serde_json::from_str::<Value>(t).expect("json")["headers"]["eventId"].clone())
            .collect();
        assert_eq!(ids[0], ids[1], "the same event");
        hub.answer(conn, &ack_of(&sent[0]));
        assert_eq!(hub.stats().acks_ignored, 1);
        hub.answer(conn, &ack_of(&sent[1]));
        assert_eq!(hub.stats().acks, 1);
        assert!(hub.stats().pending.is_empty());
    }

    #[test]
    fn faults_drop_events_and_delay_them_out_of_order() {
        let mut hub = Hub::default();
        hub.faults.drop_next = 1;
        let mut rng = fastrand::Rng::with_seed(6);
        let t0 = Instant::now();
        let (tx, mut rx) = unbounded_channel();
        hub.connect("k", tx, &mut rng, t0);
        hub.push(event(), &mut rng, t0);
        hub.tick(&mut rng, t0 + Duration::from_secs(10));
        assert!(texts(&mut rx).is_empty(), "a dropped event never comes");
        assert_eq!(hub.stats().dropped, 1);
        assert!(hub.stats().pending.is_empty());

        // Each event waits 1 s plus up to 1 s: produced 1 ms apart, some
        // arrive in another order.
        hub.faults.delay_ms = 1_000;
        hub.faults.delay_jitter_ms = 1_000;
        let mut names = Vec::new();
        for i in 0..20 {
            let mut e = event();
            e.data = json!({"userId": [format!("u{i}")]});
            hub.push(e, &mut rng, t0 + Duration::from_millis(i));
            names.push(format!("u{i}"));
        }
        hub.tick(&mut rng, t0 + Duration::from_millis(999));
        assert!(texts(&mut rx).is_empty(), "nothing before the delay");
        let mut arrived = Vec::new();
        for ms in (1_000..=2_100).step_by(50) {
            hub.tick(&mut rng, t0 + Duration::from_millis(ms));
            for t in texts(&mut rx) {
                let frame: Value = serde_json::from_str(&t).expect("json");
                let data: Value =
                    serde_json::from_str(frame["data"].as_str().expect("data")).expect("json");
                arrived.push(data["userId"][0].as_str().expect("id").to_string());
            }
        }
        let mut sorted = arrived.clone();
        sorted.sort_by_key(|n| n[1..].parse::<u32>().expect("number"));
        assert_eq!(sorted, names, "every event arrives once");
        assert_ne!(arrived, names, "not in the order produced");
    }

    #[test]
    fn a_preferred_connection_gets_the_first_delivery_and_withdrawn_events_go() {
        let mut hub = Hub::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = Instant::now();
        let (tx1, mut rx1) = unbounded_channel();
        let (tx2, mut rx2) = unbounded_channel();
        hub.connect("k", tx1, &mut rng, t0);
        let c2 = hub.connect("k", tx2, &mut rng, t0);
        for _ in 0..10 {
            hub.push_to(event(), Some(c2), &mut rng, t0);
        }
        assert!(texts(&mut rx1).is_empty());
        assert_eq!(texts(&mut rx2).len(), 10);
        assert!(hub.is_connection_of(c2, "k") && !hub.is_connection_of(c2, "other"));
        assert_eq!(hub.withdraw("k", "user_leave_org"), 10);
        assert_eq!(hub.withdraw("k", "user_leave_org"), 0);
        assert!(hub.stats().pending.is_empty());
    }

    #[test]
    fn system_pings_are_counted_when_echoed() {
        let mut hub = Hub::new(StreamFaults {
            ping_interval_ms: 100,
            ..StreamFaults::default()
        });
        let mut rng = fastrand::Rng::with_seed(4);
        let t0 = Instant::now();
        let (tx, mut rx) = unbounded_channel();
        let conn = hub.connect("k", tx, &mut rng, t0);
        hub.tick(&mut rng, t0 + Duration::from_millis(100));
        let sent = texts(&mut rx);
        assert_eq!(sent.len(), 1);
        let frame = parse_frame(&serde_json::from_str(&sent[0]).expect("json")).expect("frame");
        let Action::Pong(pong) = decide(frame, &mut Seen::default(), jiff::Timestamp::UNIX_EPOCH)
        else {
            panic!("a ping");
        };
        hub.answer(conn, &pong.to_string());
        assert_eq!(hub.stats().pongs, 1);
    }

    #[test]
    fn events_are_given_up_after_the_window() {
        let mut hub = Hub::default();
        let mut rng = fastrand::Rng::with_seed(5);
        let t0 = Instant::now();
        hub.push(event(), &mut rng, t0);
        hub.tick(&mut rng, t0 + Duration::from_secs(301));
        assert_eq!(hub.stats().expired, 1);
        assert!(hub.stats().pending.is_empty());
    }

    #[test]
    fn a_patch_out_of_range_is_refused() {
        let patch = StreamFaultsPatch {
            redeliver_after_ms: Some(0),
            ..Default::default()
        };
        assert!(patch.check().is_err());
        let patch = StreamFaultsPatch {
            ping_interval_ms: Some(MAX_STREAM_DELAY_MS + 1),
            ..Default::default()
        };
        assert!(patch.check().is_err());
    }
}
