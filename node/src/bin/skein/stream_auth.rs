//! `skein token publish|play APP/KEY` and `skein stream-key rotate|list|retire`: publish and
//! play tokens and the keys that sign them. A cluster member's keys live in the cluster state
//! and are reached through the admin API; a standalone node's live in its key file, which
//! these commands read and write directly (the running node picks the change up).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use skein_node::auth::keys::{self, KeyRing, StreamKey};
use skein_node::auth::token::{self, Claims};
use skein_node::auth::{Action, query};
use skein_node::hub::validate_key;

use crate::admin::{self, AdminArgs, AdminTokenArgs, COMMAND_TIMEOUT};
use crate::duration::parse_duration;

/// Where the keys are: a running node's API, or a standalone node's key file.
#[derive(Debug, Args)]
pub struct KeySourceArgs {
    /// HTTP address of a running node to ask through its admin API. Default: the API of
    /// 127.0.0.1:8080 when DATA_DIR belongs to a cluster member, else the key file.
    #[arg(long, env = "SKEIN_API")]
    pub api: Option<String>,
    #[command(flatten)]
    pub token: AdminTokenArgs,
    /// Data directory of the local node.
    #[arg(long, env = "SKEIN_DATA_DIR", default_value = "skein-data")]
    pub data_dir: PathBuf,
    /// Key file of a standalone node (auth.keys_file; default DATA_DIR/stream-keys.json).
    #[arg(long, env = "SKEIN_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
}

enum Source {
    Api(AdminArgs),
    File(PathBuf),
}

impl KeySourceArgs {
    fn source(&self) -> Source {
        let member = skein_raft::Cluster::is_member(&self.data_dir);
        match (&self.api, member) {
            (Some(_), _) | (None, true) => Source::Api(AdminArgs {
                api: self
                    .api
                    .clone()
                    .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
                token: self.token.clone(),
                data_dir: self.data_dir.clone(),
            }),
            (None, false) => Source::File(
                self.keys_file
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("stream-keys.json")),
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct StreamTokenArgs {
    /// The stream, APP/KEY (e.g. live/cam1).
    pub stream: String,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Only a client from this address may use the token.
    #[arg(long)]
    pub client_ip: Option<IpAddr>,
    #[command(flatten)]
    pub keys: KeySourceArgs,
}

#[derive(Debug, Subcommand)]
pub enum StreamKeyCommand {
    /// Add a new signing key: it signs every token minted from now on; older keys keep
    /// verifying the tokens they signed until they are retired.
    Rotate(KeySourceArgs),
    /// List the signing keys (ids, never secrets), the signing one first.
    List(KeySourceArgs),
    /// Retire a key: the tokens it signed stop working at once. The last key cannot go.
    Retire {
        /// The key id, as `skein stream-key list` shows it.
        id: String,
        #[command(flatten)]
        keys: KeySourceArgs,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `skein token publish|play APP/KEY`: prints the token on stdout, how to use it on stderr.
pub fn mint(args: &StreamTokenArgs, action: Action) -> anyhow::Result<()> {
    let stream = query::strip(&args.stream);
    let Some((app, key)) = stream.split_once('/') else {
        bail!("{stream:?} is not APP/KEY (e.g. live/cam1)");
    };
    validate_key(app).map_err(|e| anyhow::anyhow!("app {app:?}: {e}"))?;
    validate_key(key).map_err(|e| anyhow::anyhow!("key {key:?}: {e}"))?;
    if args.ttl.is_zero() {
        bail!("--ttl must be positive (e.g. 30m, 1h, 7d)");
    }
    let (token, key_id) = match args.keys.source() {
        Source::Api(admin_args) => {
            mint_through_api(&admin_args, action, stream, args.ttl, args.client_ip)?
        }
        Source::File(path) => {
            let mut ring = KeyRing::from_records(&keys::read_file(&path)?);
            if ring.is_empty() {
                let id = keys::rotate_file(&path, now_ms())?;
                eprintln!(
                    "no stream signing key yet: created {id} in {}",
                    path.display()
                );
                ring = KeyRing::from_records(&keys::read_file(&path)?);
            }
            let signer: &StreamKey = ring.signer().context("the key file holds no usable key")?;
            let claims = Claims {
                key_id: signer.id.clone(),
                action,
                stream: stream.to_owned(),
                expires: now_ms() / 1000 + args.ttl.as_secs(),
                client_ip: args.client_ip,
            };
            (token::sign(signer, &claims), signer.id.clone())
        }
    };
    println!("{token}");
    let example = match action {
        Action::Publish => format!("rtmp://HOST/{stream}?token={token}"),
        Action::Play => format!(
            "rtmp://HOST/{stream}?token={token}\n  http://HOST:8080/{stream}.flv?token={token}"
        ),
    };
    eprintln!(
        "{action} token for {stream}, valid {} s{}, signed by key {key_id}; use it as\n  {example}",
        args.ttl.as_secs(),
        args.client_ip
            .map(|ip| format!(" from {ip} only"))
            .unwrap_or_default(),
    );
    Ok(())
}

/// Mints a token through a node's admin API; returns it and the id of the key that signed it.
pub fn mint_through_api(
    admin_args: &AdminArgs,
    action: Action,
    stream: &str,
    ttl: Duration,
    client_ip: Option<IpAddr>,
) -> anyhow::Result<(String, String)> {
    let value = post(
        admin_args,
        "/api/v1/stream-tokens",
        json!({
            "action": action,
            "stream": stream,
            "ttl_secs": ttl.as_secs(),
            "client_ip": client_ip,
        }),
        "mint a stream token",
    )?;
    let token = value["token"]
        .as_str()
        .context("the node answered without a token")?;
    let key_id = value["key_id"].as_str().unwrap_or_default();
    Ok((token.to_owned(), key_id.to_owned()))
}

fn post(admin_args: &AdminArgs, path: &str, body: Value, what: &str) -> anyhow::Result<Value> {
    let token = admin::token(admin_args)?;
    admin::read(
        admin::agent(COMMAND_TIMEOUT)
            .post(admin::url(&admin_args.api, path))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body),
        what,
        &admin_args.api,
    )
}

/// `skein stream-key rotate|list|retire`.
pub fn manage(command: &StreamKeyCommand) -> anyhow::Result<()> {
    match command {
        StreamKeyCommand::Rotate(keys_args) => {
            let id = match keys_args.source() {
                Source::Api(a) => post(&a, "/api/v1/stream-keys", json!({}), "rotate")?["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                Source::File(path) => keys::rotate_file(&path, now_ms())?,
            };
            println!("stream key {id} added: it signs new tokens; older keys verify until retired");
        }
        StreamKeyCommand::List(keys_args) => {
            let listed: Vec<(String, u64, bool)> = match keys_args.source() {
                Source::Api(a) => {
                    let token = admin::token(&a)?;
                    let value = admin::read(
                        admin::agent(COMMAND_TIMEOUT)
                            .get(admin::url(&a.api, "/api/v1/stream-keys"))
                            .header("Authorization", &format!("Bearer {token}"))
                            .call(),
                        "list stream keys",
                        &a.api,
                    )?;
                    value["keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|k| {
                            (
                                k["id"].as_str().unwrap_or_default().to_owned(),
                                k["created_ms"].as_u64().unwrap_or_default(),
                                k["signing"].as_bool().unwrap_or_default(),
                            )
                        })
                        .collect()
                }
                Source::File(path) => KeyRing::from_records(&keys::read_file(&path)?)
                    .keys()
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k.id.clone(), k.created_ms, i == 0))
                    .collect(),
            };
            if listed.is_empty() {
                println!("no stream signing key yet: create one with skein stream-key rotate");
            }
            for (id, created_ms, signing) in listed {
                let age = now_ms().saturating_sub(created_ms) / 1000;
                let role = if signing { "signing" } else { "verifying" };
                println!("{id}  {role:<9}  added {age} s ago");
            }
        }
        StreamKeyCommand::Retire {
            id,
            keys: keys_args,
        } => {
            match keys_args.source() {
                Source::Api(a) => {
                    let token = admin::token(&a)?;
                    admin::read(
                        admin::agent(COMMAND_TIMEOUT)
                            .delete(admin::url(&a.api, &format!("/api/v1/stream-keys/{id}")))
                            .header("Authorization", &format!("Bearer {token}"))
                            .call(),
                        "retire stream key",
                        &a.api,
                    )?;
                }
                Source::File(path) => keys::retire_file(&path, id)?,
            }
            println!("stream key {id} retired: the tokens it signed no longer work");
        }
    }
    Ok(())
}
