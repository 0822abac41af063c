//! One app's Stream connection, kept open for as long as its handle lives:
//! a new ticket before every connect; every frame answered as
//! `core::events::decide` says (ack an event, echo a ping; on a SYSTEM
//! disconnect the new connection is opened first, then the old one
//! dropped); WebSocket pings when idle; reconnects after
//! `core::events::Backoff`'s delay; new events, de-duplicated by
//! `core::events::Seen`, handed to a channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use jiff::Timestamp;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::open::{self, Socket};
use super::{StreamApp, StreamConfig, StreamError, StreamEvent, StreamItem, StreamStats};
use crate::core::events::{Action, Backoff, Seen, decide, gap_needs_full_sync, parse_frame};

/// A running connection task. Dropping it stops the task too (at its next
/// await); [`StreamHandle::stop`] also waits for it to end.
#[derive(Debug)]
pub struct StreamHandle {
    stats: Arc<StreamStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StreamHandle {
    /// What the connection observed; shared, updated as it runs.
    pub fn stats(&self) -> Arc<StreamStats> {
        self.stats.clone()
    }

    /// Closes the connection and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the connection task of `app`; what it receives goes to `events`.
/// The task ends when the handle is dropped or stopped, or when `events`'
/// receiver is gone.
pub fn spawn(
    config: StreamConfig,
    app: StreamApp,
    events: mpsc::Sender<StreamEvent>,
) -> Result<StreamHandle, StreamError> {
    let http = open::http_client(&config)?;
    let stats = Arc::new(StreamStats::default());
    let (stop, stopped) = watch::channel(false);
    let connection = Connection {
        config,
        app,
        http,
        stats: stats.clone(),
        events,
    };
    let task = tokio::spawn(connection.run(stopped));
    Ok(StreamHandle { stats, stop, task })
}

/// Everything the task holds.
struct Connection {
    config: StreamConfig,
    app: StreamApp,
    http: reqwest::Client,
    stats: Arc<StreamStats>,
    events: mpsc::Sender<StreamEvent>,
}

/// How one connection ended.
enum End {
    /// Stopped (the handle, or the receiver of events, is gone).
    Stopped,
    /// DingTalk asked for a new connection, which is open: use it.
    Replaced(Box<Socket>),
    /// The connection failed or was closed.
    Failed(StreamError),
}

/// A connection being opened while the current one still serves.
type Opening<'a> = Pin<Box<dyn Future<Output = Result<Box<Socket>, StreamError>> + Send + 'a>>;

/// Resolves when the task is told to stop (or its handle is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

impl Connection {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        let mut seen = Seen::default();
        let mut next: Option<Box<Socket>> = None;
        // A `Disconnected` went out since the last `Connected` (or start).
        let mut told_down = false;
        loop {
            let socket = match next.take() {
                Some(socket) => socket,
                None => {
                    let attempt = tokio::select! {
                        () = stop_requested(&mut stopped) => return,
                        r = self.open() => r,
                    };
                    match attempt {
                        Ok(socket) => socket,
                        Err(e) => {
                            tracing::warn!(app_key = %self.app.key(), error = %e, "cannot open the Stream connection");
                            self.stats.open_failed(e.to_string());
                            if !told_down && !self.tell(StreamItem::Disconnected).await {
                                return;
                            }
                            told_down = true;
                            if self.pause(&mut backoff, &mut stopped).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let now = Timestamp::now();
            let needs_full_sync = gap_needs_full_sync(self.stats.last_alive(), now);
            let reconnect = self.stats.connected(now);
            tracing::info!(app_key = %self.app.key(), needs_full_sync, "Stream connected");
            let opened = Instant::now();
            told_down = false;
            let connected = StreamItem::Connected {
                needs_full_sync,
                reconnect,
            };
            if !self.tell(connected).await {
                return;
            }
            let end = self.serve(socket, &mut seen, &mut stopped).await;
            backoff.connected_for(opened.elapsed());
            match end {
                End::Stopped => {
                    self.stats.disconnected(None);
                    return;
                }
                End::Replaced(socket) => {
                    tracing::info!(app_key = %self.app.key(), "Stream connection replaced");
                    next = Some(socket);
                }
                End::Failed(e) => {
                    tracing::warn!(app_key = %self.app.key(), error = %e, "Stream connection lost");
                    self.stats.disconnected(Some(e.to_string()));
                    if !self.tell(StreamItem::Disconnected).await {
                        return;
                    }
                    told_down = true;
                    if self.pause(&mut backoff, &mut stopped).await {
                        return;
                    }
                }
            }
        }
    }

    /// Hands `item` on; `false` when nobody listens any more.
    async fn tell(&self, item: StreamItem) -> bool {
        let event = StreamEvent {
            app_key: self.app.app_key.clone(),
            item,
        };
        self.events.send(event).await.is_ok()
    }

    /// Waits for the backoff's next delay; `true` when told to stop meanwhile.
    async fn pause(&self, backoff: &mut Backoff, stopped: &mut watch::Receiver<bool>) -> bool {
        let delay = backoff.next_delay(fastrand::f64());
        tracing::debug!(app_key = %self.app.key(), ?delay, "Stream reconnects after");
        tokio::select! {
            () = stop_requested(stopped) => true,
            () = tokio::time::sleep(delay) => false,
        }
    }

    /// A new ticket, then its WebSocket.
    async fn open(&self) -> Result<Box<Socket>, StreamError> {
        let ticket = open::ticket(&self.http, &self.config, &self.app).await?;
        self.stats.ticket();
        open::connect(&self.config, &self.app, &ticket)
            .await
            .map(Box::new)
    }

    fn socket_error(&self, e: impl std::fmt::Display) -> StreamError {
        StreamError::Socket {
            app_key: self.app.app_key.clone(),
            message: crate::redact::redact(&e.to_string(), &[self.app.app_secret.expose()]),
        }
    }

    /// Serves one connection until it ends.
    async fn serve(
        &self,
        mut socket: Box<Socket>,
        seen: &mut Seen,
        stopped: &mut watch::Receiver<bool>,
    ) -> End {
        let mut last_frame = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let mut opening: Option<Opening<'_>> = None;
        loop {
            let deadline = match ping_sent {
                Some(at) => at + self.config.pong_timeout,
                None => last_frame + self.config.idle_ping,
            };
            let replacement = async {
                match opening.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop_requested(stopped) => {
                    let _ = Socket::close(&mut socket, None).await;
                    return End::Stopped;
                }
                r = replacement => {
                    opening = None;
                    match r {
                        Ok(new) => {
                            let _ = Socket::close(&mut socket, None).await;
                            return End::Replaced(new);
                        }
                        // The old connection serves until DingTalk closes it;
                        // then the usual reconnect follows.
                        Err(e) => {
                            tracing::warn!(app_key = %self.app.key(), error = %e, "cannot open the replacement Stream connection");
                            self.stats.open_failed(e.to_string());
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if ping_sent.is_some() {
                        return End::Failed(StreamError::PongTimeout {
                            app_key: self.app.app_key.clone(),
                            seconds: self.config.pong_timeout.as_secs(),
                        });
                    }
                    if let Err(e) = socket.send(Message::Ping(Bytes::new())).await {
                        return End::Failed(self.socket_error(e));
                    }
                    ping_sent = Some(Instant::now());
                }
                message = socket.next() => {
                    let message = match message {
                        None => return End::Failed(StreamError::Closed { app_key: self.app.app_key.clone() }),
                        Some(Err(e)) => return End::Failed(self.socket_error(e)),
                        Some(Ok(m)) => m,
                    };
                    last_frame = Instant::now();
                    ping_sent = None;
                    self.stats.alive(Timestamp::now());
                    let text = match message {
                        Message::Text(t) => t.as_str().to_owned(),
                        Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                        Message::Close(_) => return End::Failed(StreamError::Closed { app_key: self.app.app_key.clone() }),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    };
                    match self.answer(&text, seen) {
                        Step::Send(reply, event) => {
                            if let Err(e) = socket.send(Message::Text(reply.to_string().into())).await {
                                return End::Failed(self.socket_error(e));
                            }
                            if let Some(event) = event
                                && self.events.send(*event).await.is_err()
                            {
                                let _ = Socket::close(&mut socket, None).await;
                                return End::Stopped;
                            }
                        }
                        Step::Reconnect => {
                            if opening.is_none() {
                                opening = Some(Box::pin(self.open()));
                            }
                        }
                        Step::Nothing => {}
                    }
                }
            }
        }
    }

    /// What to do with one text frame.
    fn answer(&self, text: &str, seen: &mut Seen) -> Step {
        let frame = match serde_json::from_str::<Value>(text) {
            Ok(value) => parse_frame(&value),
            Err(e) => {
                tracing::warn!(app_key = %self.app.key(), error = %e, "a Stream frame is not JSON");
                return Step::Nothing;
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(app_key = %self.app.key(), error = %e, "a Stream frame cannot be read");
                return Step::Nothing;
            }
        };
        match decide(frame, seen, Timestamp::now()) {
            Action::Ack { ack, event } => {
                let event = match event {
                    Some(event) => {
                        self.stats.event(Timestamp::now());
                        tracing::debug!(app_key = %self.app.key(), event_type = ?event.event_type, "Stream event");
                        Some(Box::new(StreamEvent {
                            app_key: self.app.app_key.clone(),
                            item: StreamItem::Event(event),
                        }))
                    }
                    None => {
                        self.stats.duplicate();
                        None
                    }
                };
                Step::Send(ack, event)
            }
            Action::Pong(pong) => Step::Send(pong, None),
            Action::Reconnect { reason } => {
                tracing::info!(app_key = %self.app.key(), ?reason, "DingTalk asks for a new Stream connection");
                Step::Reconnect
            }
            Action::Ignore => Step::Nothing,
        }
    }
}

/// The outcome of one frame.
enum Step {
    /// Send this answer, then hand this event on (if any).
    Send(Value, Option<Box<StreamEvent>>),
    /// Open a new connection, then drop this one.
    Reconnect,
    Nothing,
}

impl StreamApp {
    /// The app key, for logs.
    fn key(&self) -> &str {
        &self.app_key
    }
}
