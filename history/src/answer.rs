//! The JSON a program serves for its own history (`GET /api/v1/history`): without a metric,
//! the catalogue (families and their metrics, resolutions, the store's size, the labels of
//! the labelled families' series); with one, the series of a checked [`RangeQuery`].

use serde_json::{Value, json};

use crate::query::RangeQuery;
use crate::resolution::RESOLUTIONS;
use crate::store::HistoryStore;

/// What `name`'s store holds.
pub fn catalogue(store: &HistoryStore, name: &str) -> Value {
    let interval_ms = store.interval_ms();
    let families: Vec<Value> = store
        .families()
        .iter()
        .map(|family| {
            let labels = (!family.label.is_empty()).then(|| {
                store
                    .labels(family)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(label, last_ms)| json!({ "label": label, "last": last_ms }))
                    .collect::<Vec<_>>()
            });
            json!({
                "name": family.name,
                "label": family.label,
                "metrics": family.metrics,
                "max_retention_secs": family.max_retention_ms / 1000,
                "series": labels,
            })
        })
        .collect();
    json!({
        "node": name,
        "interval_secs": interval_ms / 1000,
        "metrics": store.families().first().map(|f| f.metrics),
        "families": families,
        "resolutions": RESOLUTIONS.iter().map(|r| json!({
            "name": r.name,
            "step_secs": r.step_ms(interval_ms) / 1000,
            "retention_secs": r.retention_ms / 1000,
        })).collect::<Vec<_>>(),
        "store": {
            "periods": store.periods().ok(),
            "file_bytes": store.file_bytes(),
        },
    })
}

/// `name`'s own series for `query` at `now_ms`, read from `store` (blocking: call it off the
/// async workers).
pub fn own_series(
    store: &HistoryStore,
    name: &str,
    query: &RangeQuery,
    now_ms: u64,
) -> anyhow::Result<Value> {
    let interval_ms = store.interval_ms();
    let resolution = query.resolution(now_ms, interval_ms);
    let buckets = store.read(
        query.family,
        &query.label,
        query.metric.name,
        &resolution,
        query.from_ms,
        query.to_ms,
    )?;
    let mut answer = json!({
        "metric": query.metric.name,
        "unit": query.metric.unit,
        "node": name,
        "resolution": resolution.name,
        "from": query.from_ms,
        "to": query.to_ms,
        "step_ms": query.step_ms,
        "points": query.points(&buckets, interval_ms),
    });
    if !query.label.is_empty() {
        answer[query.family.label] = query.label.clone().into();
    }
    Ok(answer)
}
