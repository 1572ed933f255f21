//! HTTP hooks in the style of SRS and nginx-rtmp: a JSON POST per event to the URL configured
//! in `[auth.hooks]`. `on_publish` and `on_play` decide — a 2xx answer lets the client in,
//! anything else refuses it — with a timeout, a bound on calls in flight and a short cache of
//! answers; `on_unpublish` and `on_stop` only tell (fire and forget, bounded too). A call that
//! fails (timeout, unreachable, too many in flight) refuses unless `allow_on_error` is set.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Request, header};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::auth::Denial;
use crate::config::HooksSection;

/// Answers remembered at most; beyond it, expired ones go, then all.
const MAX_CACHED: usize = 4096;

/// The four events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    /// Before a publish (decides).
    OnPublish,
    /// Before a play (decides).
    OnPlay,
    /// A publish ended (told).
    OnUnpublish,
    /// A play ended (told).
    OnStop,
}

impl HookEvent {
    /// The event's name, as in the configuration and the request body.
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::OnPublish => "on_publish",
            HookEvent::OnPlay => "on_play",
            HookEvent::OnUnpublish => "on_unpublish",
            HookEvent::OnStop => "on_stop",
        }
    }
}

/// The JSON body of every hook call.
#[derive(Debug, Clone, Serialize)]
pub struct HookBody {
    /// `on_publish`, `on_play`, `on_unpublish` or `on_stop`.
    pub action: &'static str,
    /// The app.
    pub app: String,
    /// The stream key, without its query.
    pub stream: String,
    /// The node-unique client id (as in `/api/v1/clients`).
    pub client_id: u64,
    /// The client's address.
    pub client_ip: IpAddr,
    /// `rtmp` or `http-flv`.
    pub protocol: &'static str,
    /// The node's name.
    pub node: String,
    /// The query string the client sent (`token=...&...`), as sent.
    pub param: String,
    /// The query parameters, decoded.
    pub params: HashMap<String, String>,
}

/// Event, client address, app, stream and query: what an answer is remembered for.
type CacheKey = (HookEvent, IpAddr, String, String, String);
/// When the answer came, and what it was.
type Answer = (Instant, Result<(), Denial>);

/// The hook client of a node.
pub struct Hooks {
    config: HooksSection,
    client: Client<HttpConnector, Full<Bytes>>,
    deciding: Arc<Semaphore>,
    telling: Arc<Semaphore>,
    answers: Mutex<HashMap<CacheKey, Answer>>,
}

impl Hooks {
    /// The hooks `config` names.
    pub fn new(config: &HooksSection) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.timeout_ms)));
        Self {
            config: config.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            deciding: Arc::new(Semaphore::new(config.max_in_flight)),
            telling: Arc::new(Semaphore::new(config.max_in_flight)),
            answers: Mutex::new(HashMap::new()),
        }
    }

    fn url(&self, event: HookEvent) -> &str {
        match event {
            HookEvent::OnPublish => &self.config.on_publish,
            HookEvent::OnPlay => &self.config.on_play,
            HookEvent::OnUnpublish => &self.config.on_unpublish,
            HookEvent::OnStop => &self.config.on_stop,
        }
    }

    /// Asks the `on_publish` or `on_play` hook whether `body`'s client may go on.
    pub async fn decide(&self, event: HookEvent, body: &HookBody) -> Result<(), Denial> {
        let key: CacheKey = (
            event,
            body.client_ip,
            body.app.clone(),
            body.stream.clone(),
            body.param.clone(),
        );
        let cache_for = Duration::from_millis(self.config.cache_ms);
        if let Some((at, answer)) = self.answers.lock().get(&key)
            && at.elapsed() < cache_for
        {
            return answer.clone();
        }
        let answer = match self.deciding.clone().try_acquire_owned() {
            Err(_) => Err(Denial::HookBusy(event.name())),
            Ok(_permit) => self.call(event, body).await,
        };
        let failed = matches!(
            answer,
            Err(Denial::HookBusy(_) | Denial::HookTimeout(_) | Denial::HookUnreachable(..))
        );
        if failed {
            if self.config.allow_on_error {
                tracing::warn!(hook = event.name(), error = %answer.as_ref().unwrap_err(), "hook failed; letting the client in (auth.hooks.allow_on_error)");
                return Ok(());
            }
            // A failure is not an answer: the next attempt asks again.
            return answer;
        }
        if !cache_for.is_zero() {
            let mut answers = self.answers.lock();
            if answers.len() >= MAX_CACHED {
                answers.retain(|_, (at, _)| at.elapsed() < cache_for);
                if answers.len() >= MAX_CACHED {
                    answers.clear();
                }
            }
            answers.insert(key, (Instant::now(), answer.clone()));
        }
        answer
    }

    /// Tells the `on_unpublish` or `on_stop` hook, if one is set, without waiting for it. At
    /// most `max_in_flight` notices are on their way; beyond that one is dropped (and logged).
    pub fn tell(self: &Arc<Self>, event: HookEvent, body: HookBody) {
        if self.url(event).is_empty() {
            return;
        }
        let Ok(permit) = self.telling.clone().try_acquire_owned() else {
            tracing::warn!(
                hook = event.name(),
                "too many hook notices in flight; this one is dropped"
            );
            return;
        };
        let hooks = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = hooks.call(event, &body).await {
                tracing::info!(hook = event.name(), stream = %body.stream, error = %e, "hook notice not taken");
            }
        });
    }

    /// Whether `event` has a URL.
    pub fn is_set(&self, event: HookEvent) -> bool {
        !self.url(event).is_empty()
    }

    /// One POST, bounded by the timeout: `Ok` for a 2xx answer.
    async fn call(&self, event: HookEvent, body: &HookBody) -> Result<(), Denial> {
        let name = event.name();
        let json = serde_json::to_vec(body).expect("hook body serializes");
        let request = Request::post(self.url(event))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| Denial::HookUnreachable(name, e.to_string()))?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| Denial::HookTimeout(name))?
            .map_err(|e| Denial::HookUnreachable(name, e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Denial::HookDenied(name, status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::StatusCode;

    use super::*;

    /// A hook server on 127.0.0.1 counting its calls: app `slow` answers after a second,
    /// `deny` with 403, anything else with 200.
    async fn server(calls: Arc<AtomicUsize>) -> String {
        async fn hook(
            State(calls): State<Arc<AtomicUsize>>,
            axum::Json(body): axum::Json<serde_json::Value>,
        ) -> StatusCode {
            calls.fetch_add(1, Ordering::SeqCst);
            match body["app"].as_str() {
                Some("slow") => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    StatusCode::OK
                }
                Some("deny") => StatusCode::FORBIDDEN,
                _ => StatusCode::NO_CONTENT,
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(calls);
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    fn body(app: &str) -> HookBody {
        HookBody {
            action: "on_publish",
            app: app.into(),
            stream: "cam".into(),
            client_id: 1,
            client_ip: "127.0.0.1".parse().unwrap(),
            protocol: "rtmp",
            node: "n".into(),
            param: String::new(),
            params: HashMap::new(),
        }
    }

    fn hooks(url: &str, tweak: impl FnOnce(&mut HooksSection)) -> Arc<Hooks> {
        let mut config = HooksSection {
            on_publish: url.into(),
            on_unpublish: url.into(),
            ..HooksSection::default()
        };
        tweak(&mut config);
        Arc::new(Hooks::new(&config))
    }

    #[tokio::test]
    async fn answers_are_cached_and_failures_are_not() {
        let calls = Arc::new(AtomicUsize::new(0));
        let url = server(calls.clone()).await;
        let cached = hooks(&url, |_| {});
        for _ in 0..3 {
            assert_eq!(
                cached.decide(HookEvent::OnPublish, &body("a")).await,
                Ok(())
            );
            assert_eq!(
                cached.decide(HookEvent::OnPublish, &body("deny")).await,
                Err(Denial::HookDenied("on_publish", 403))
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one call per answer");

        let uncached = hooks(&url, |c| c.cache_ms = 0);
        for _ in 0..2 {
            uncached
                .decide(HookEvent::OnPublish, &body("a"))
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let impatient = hooks(&url, |c| c.timeout_ms = 100);
        for _ in 0..2 {
            assert_eq!(
                impatient.decide(HookEvent::OnPublish, &body("slow")).await,
                Err(Denial::HookTimeout("on_publish"))
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 6, "a timeout is asked again");
    }

    #[tokio::test]
    async fn calls_beyond_the_bound_are_refused_as_busy() {
        let calls = Arc::new(AtomicUsize::new(0));
        let url = server(calls.clone()).await;
        let bounded = hooks(&url, |c| c.max_in_flight = 1);
        let first = {
            let bounded = bounded.clone();
            tokio::spawn(async move { bounded.decide(HookEvent::OnPublish, &body("slow")).await })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the first call never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            bounded.decide(HookEvent::OnPublish, &body("other")).await,
            Err(Denial::HookBusy("on_publish"))
        );
        assert_eq!(first.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn an_unreachable_hook_refuses_unless_told_to_allow_and_notices_are_sent() {
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let strict = hooks(&url, |_| {});
        assert!(matches!(
            strict.decide(HookEvent::OnPublish, &body("a")).await,
            Err(Denial::HookUnreachable("on_publish", _))
        ));
        let lenient = hooks(&url, |c| c.allow_on_error = true);
        assert_eq!(
            lenient.decide(HookEvent::OnPublish, &body("a")).await,
            Ok(())
        );

        let calls = Arc::new(AtomicUsize::new(0));
        let told = hooks(&server(calls.clone()).await, |_| {});
        told.tell(HookEvent::OnUnpublish, body("a"));
        told.tell(HookEvent::OnStop, body("a")); // no on_stop URL: nothing sent
        let deadline = Instant::now() + Duration::from_secs(5);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the notice never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
