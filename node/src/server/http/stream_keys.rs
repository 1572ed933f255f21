//! `/api/v1/stream-keys` and `/api/v1/stream-tokens` (admin): the stream signing keys — the
//! cluster's, or a standalone node's key file — and minting publish and play tokens with them.
//! What `skein stream-key` and `skein token publish|play` talk to.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, authorize};
use crate::auth::keys::{self, StreamKey};
use crate::auth::token::{self, Claims};
use crate::auth::{Action, query};
use crate::hub::validate_key;
use crate::server::context::Node;

/// Longest token lifetime the API mints (a publisher's token may be configured once, in OBS).
const MAX_TOKEN_TTL_SECS: u64 = 400 * 86_400;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn source(node: &Node) -> String {
    match node.cluster() {
        Some(_) => "cluster".into(),
        None => format!("file {}", node.key_file().display()),
    }
}

/// Adds a new signing key (it signs from now on) and returns it.
async fn rotate(node: &Node) -> Result<StreamKey, ApiError> {
    let key = StreamKey::generate(now_ms());
    match node.cluster() {
        Some(link) => link
            .cluster
            .add_stream_key(key.to_record())
            .await
            .map_err(failed)?,
        None => {
            let mut records =
                keys::read_file(node.key_file()).map_err(|e| failed(format!("{e:#}")))?;
            records.push(key.to_record());
            keys::write_file(node.key_file(), &records).map_err(|e| failed(format!("{e:#}")))?;
        }
    }
    tracing::info!(key = %key.id, source = %source(node), "stream signing key added");
    Ok(key)
}

/// Admin: the signing keys (ids only), newest (the signing one) first.
pub async fn list(State(node): State<Arc<Node>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let ring = node.stream_keys();
    let listed: Vec<_> = ring
        .keys()
        .iter()
        .enumerate()
        .map(|(i, k)| json!({ "id": k.id, "created_ms": k.created_ms, "signing": i == 0 }))
        .collect();
    Ok(Json(json!({ "source": source(&node), "keys": listed })).into_response())
}

/// Admin: rotation — a new key signs from now on; older keys verify until retired.
pub async fn add(State(node): State<Arc<Node>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let key = rotate(&node).await?;
    Ok(Json(json!({ "id": key.id, "created_ms": key.created_ms })).into_response())
}

/// Admin: retires a key; the tokens it signed stop working. The last key stays.
pub async fn retire(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let refused = |e: String| ApiError(StatusCode::CONFLICT, e);
    match node.cluster() {
        Some(link) => link
            .cluster
            .retire_stream_key(&id)
            .await
            .map_err(|e| refused(e.to_string()))?,
        None => keys::retire_file(node.key_file(), &id).map_err(|e| refused(format!("{e:#}")))?,
    }
    tracing::info!(key = %id, source = %source(&node), "stream signing key retired");
    Ok(Json(json!({ "retired": id })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `publish` or `play`.
    action: Action,
    /// `app/key`.
    stream: String,
    /// Lifetime in seconds (default one hour).
    ttl_secs: Option<u64>,
    /// Only a client from this address may use the token.
    client_ip: Option<IpAddr>,
}

/// Admin: mints a publish or play token for one stream, with the newest key (the first key is
/// created when there is none).
pub async fn mint(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Json(request): Json<TokenRequest>,
) -> Result<Response, ApiError> {
    authorize(&node, &headers)?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let stream = query::strip(&request.stream);
    let Some((app, key)) = stream.split_once('/') else {
        return Err(bad(format!("stream {stream:?} is not APP/KEY")));
    };
    validate_key(app).map_err(|e| bad(format!("app: {e}")))?;
    validate_key(key).map_err(|e| bad(format!("key: {e}")))?;
    let ttl_secs = request.ttl_secs.unwrap_or(3_600);
    if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl_secs) {
        return Err(bad(format!(
            "ttl_secs = {ttl_secs} is out of range (1 s to 400 days)"
        )));
    }
    let signer = match node.stream_keys().signer() {
        Some(key) => key.clone(),
        None => rotate(&node).await?,
    };
    let expires = now_ms() / 1000 + ttl_secs;
    let claims = Claims {
        key_id: signer.id.clone(),
        action: request.action,
        stream: stream.to_owned(),
        expires,
        client_ip: request.client_ip,
    };
    let token = token::sign(&signer, &claims);
    tracing::info!(stream, action = %request.action, ttl_secs, key = %signer.id, "stream token minted");
    Ok(Json(json!({
        "token": token,
        "stream": stream,
        "action": request.action,
        "expires": expires,
        "key_id": signer.id,
    }))
    .into_response())
}
