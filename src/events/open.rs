//! Opening one Stream connection: `POST /v1.0/gateway/connections/open`
//! with the app's credentials for an endpoint and a ticket (good for one
//! connection within 90 s), then the WebSocket to `endpoint?ticket=`.
//! The secret and the ticket go on the wire only; errors are redacted.

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{StreamApp, StreamConfig, StreamError};
use crate::core::events::subscriptions;
use crate::dingtalk::{Secret, install_crypto_provider};
use crate::redact::redact;

/// The path of `connections/open` under the base URL.
pub const OPEN_PATH: &str = "/v1.0/gateway/connections/open";

/// The largest `connections/open` answer read.
const MAX_OPEN_ANSWER: usize = 64 << 10;

/// An open Stream WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What `connections/open` answered: where to connect, with what.
#[derive(Clone, Debug)]
pub struct Ticket {
    /// `wss://…/connect` (the simulator: `ws://…`).
    pub endpoint: String,
    pub ticket: Secret,
}

/// The HTTP client of `connections/open` (rustls with the ring provider,
/// no redirects: one would carry the secret elsewhere).
pub fn http_client(config: &StreamConfig) -> Result<reqwest::Client, StreamError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(config.open_timeout)
        .connect_timeout(config.open_timeout)
        .user_agent(config.ua.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StreamError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Asks for a ticket.
pub async fn ticket(
    http: &reqwest::Client,
    config: &StreamConfig,
    app: &StreamApp,
) -> Result<Ticket, StreamError> {
    let secret = app.app_secret.expose();
    let clean = |text: &str| redact(text, &[secret]);
    let url = format!("{}{OPEN_PATH}", config.base_url.trim_end_matches('/'));
    let body = json!({
        "clientId": app.app_key,
        "clientSecret": secret,
        "subscriptions": subscriptions(),
        "ua": config.ua,
    });
    let open_error = |message: String| StreamError::Open {
        app_key: app.app_key.clone(),
        message,
    };
    let response = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| open_error(clean(&e.to_string())))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| open_error(clean(&e.to_string())))?;
    if bytes.len() > MAX_OPEN_ANSWER {
        return Err(open_error(format!(
            "an answer of {} bytes (more than {MAX_OPEN_ANSWER})",
            bytes.len()
        )));
    }
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if !status.is_success() {
        return Err(StreamError::OpenRefused {
            app_key: app.app_key.clone(),
            status: status.as_u16(),
            code: clean(&text("code").unwrap_or_default()),
            message: clean(
                &text("message")
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
            ),
        });
    }
    let answer_error = |message: &str| StreamError::OpenAnswer {
        app_key: app.app_key.clone(),
        message: message.to_owned(),
    };
    let endpoint = text("endpoint").ok_or_else(|| answer_error("no endpoint"))?;
    let ticket = text("ticket").ok_or_else(|| answer_error("no ticket"))?;
    if !(endpoint.starts_with("wss://") || endpoint.starts_with("ws://")) {
        return Err(answer_error("the endpoint is not a WebSocket URL"));
    }
    Ok(Ticket {
        endpoint,
        ticket: Secret::new(ticket),
    })
}

/// `endpoint` with the ticket as its `ticket` query parameter.
pub fn socket_url(endpoint: &str, ticket: &Secret) -> String {
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    format!(
        "{endpoint}{separator}ticket={}",
        percent_encode(ticket.expose())
    )
}

/// `text` with every byte but the unreserved ones (RFC 3986) encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The endpoint as it may be shown: without a query.
fn shown(endpoint: &str) -> &str {
    endpoint.split('?').next().unwrap_or(endpoint)
}

/// Opens the WebSocket of `ticket`, within the open timeout.
pub async fn connect(
    config: &StreamConfig,
    app: &StreamApp,
    ticket: &Ticket,
) -> Result<Socket, StreamError> {
    install_crypto_provider();
    let url = socket_url(&ticket.endpoint, &ticket.ticket);
    let error = |message: String| StreamError::Connect {
        app_key: app.app_key.clone(),
        endpoint: shown(&ticket.endpoint).to_owned(),
        message: redact(&message, &[ticket.ticket.expose(), app.app_secret.expose()]),
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    let attempt = tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true);
    match tokio::time::timeout(config.open_timeout, attempt).await {
        Err(_) => Err(error(format!(
            "no handshake within {} s",
            config.open_timeout.as_secs()
        ))),
        Ok(Err(e)) => Err(error(e.to_string())),
        Ok(Ok((socket, _))) => Ok(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_goes_in_the_query_encoded() {
        let t = Secret::new("a b+c/d");
        assert_eq!(
            socket_url("wss://h/connect", &t),
            "wss://h/connect?ticket=a%20b%2Bc%2Fd"
        );
        assert_eq!(
            socket_url("wss://h/connect?x=1", &Secret::new("t-1")),
            "wss://h/connect?x=1&ticket=t-1"
        );
        assert_eq!(shown("wss://h/connect?ticket=t-1"), "wss://h/connect");
    }
}
