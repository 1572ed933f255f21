//! History queries: a range and a step checked once (a bad one is a clear error), buckets of
//! the chosen resolution grouped into one point per step, and the points of several nodes
//! merged into the cluster's, each marked with how many nodes are behind it. A step with no
//! samples is a gap (`mean: null`), never a zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bucket::Bucket;
use super::metric::{Aggregate, Family, MetricInfo};
use super::resolution::{self, Resolution};
use super::store::MAX_LABEL;

/// Points one query answers at most.
pub const MAX_POINTS: u64 = 2_000;
/// How far back a query may reach.
const MAX_RANGE_MS: u64 = 10 * 366 * 24 * 3_600_000;
/// How far past now a range may end (clocks of nodes differ a little).
const FUTURE_SLACK_MS: u64 = 60_000;

/// Why a query was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// No such metric.
    #[error("unknown metric {0:?}; known: {1}")]
    UnknownMetric(String, String),
    /// A parameter that does not parse.
    #[error("{0}")]
    Malformed(String),
    /// A range or step that cannot be answered.
    #[error("{0}")]
    BadRange(String),
}

/// The parameters of a history request as given (`metric`, `node`, `range`, `from`, `to`,
/// `step`, and at most one label naming a series of a labelled family, such as
/// `stream=live/cam`), before they are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// The metric's name.
    pub metric: Option<String>,
    /// `self`, `cluster` or a member's name: which node's series (read by the server).
    pub node: Option<String>,
    /// A duration ending at `to`.
    pub range: Option<String>,
    /// Unix seconds.
    pub from: Option<String>,
    /// Unix seconds.
    pub to: Option<String>,
    /// A duration.
    pub step: Option<String>,
    /// The label's name (a family's `label`) and value.
    pub label: Option<(String, String)>,
}

impl Params {
    /// Reads a URL query string; a parameter given twice, or a second label, is refused.
    pub fn from_query(query: &str) -> Result<Self, QueryError> {
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "metric" => &mut params.metric,
                "node" => &mut params.node,
                "range" => &mut params.range,
                "from" => &mut params.from,
                "to" => &mut params.to,
                "step" => &mut params.step,
                _ => {
                    if let Some((first, _)) = &params.label {
                        return Err(QueryError::Malformed(format!(
                            "one series at a time: both {first:?} and {key:?} given"
                        )));
                    }
                    params.label = Some((key.into_owned(), value.into_owned()));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(QueryError::Malformed(format!("{key} is given twice")));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }
}

/// A checked query: one metric of one series, `[from_ms, to_ms)` in steps of `step_ms`,
/// `from_ms` aligned to the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// The series' family.
    pub family: &'static Family,
    /// The series' label (empty for a family of one series).
    pub label: String,
    /// The metric.
    pub metric: &'static MetricInfo,
    /// First step's start (unix ms, a multiple of the step).
    pub from_ms: u64,
    /// End of the range (unix ms, exclusive).
    pub to_ms: u64,
    /// Step length in ms.
    pub step_ms: u64,
}

/// Parses a duration such as `90`, `90s`, `5m`, `1h`, `1d` or `7d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

impl RangeQuery {
    /// Checks a request's parameters against `families` (the first is the one of a request
    /// without a label): the label, if any, names a labelled family; `metric` one of its
    /// metrics; either `range` (a duration ending now) or `from` and `to` (unix seconds; `to`
    /// defaults to now); `step` (a duration, at least the sample interval; default: the range
    /// over 300 points, rounded up to the interval).
    pub fn parse(
        families: &[&'static Family],
        params: &Params,
        now_ms: u64,
        interval_ms: u64,
    ) -> Result<Self, QueryError> {
        let (family, label) = match &params.label {
            None => (
                *families
                    .first()
                    .ok_or_else(|| QueryError::Malformed("no series are kept here".into()))?,
                String::new(),
            ),
            Some((key, value)) => {
                let family = families
                    .iter()
                    .find(|f| !f.label.is_empty() && f.label == key)
                    .ok_or_else(|| {
                        let known: Vec<&str> = families
                            .iter()
                            .map(|f| f.label)
                            .filter(|l| !l.is_empty())
                            .collect();
                        QueryError::Malformed(format!(
                            "unknown parameter {key:?}; a series is named by one of: {}",
                            known.join(", ")
                        ))
                    })?;
                if value.is_empty() || value.len() > MAX_LABEL {
                    return Err(QueryError::Malformed(format!(
                        "{key} must be 1 to {MAX_LABEL} bytes"
                    )));
                }
                (*family, value.clone())
            }
        };
        let (range, from, to, step) = (
            params.range.as_deref(),
            params.from.as_deref(),
            params.to.as_deref(),
            params.step.as_deref(),
        );
        let name = params
            .metric
            .as_deref()
            .ok_or_else(|| QueryError::Malformed("metric is required".into()))?;
        let info = family
            .metric(name)
            .ok_or_else(|| QueryError::UnknownMetric(name.into(), family.names()))?;
        let unix_s = |what: &str, text: &str| {
            text.parse::<u64>()
                .ok()
                .and_then(|s| s.checked_mul(1_000))
                .ok_or_else(|| {
                    QueryError::Malformed(format!("{what} = {text:?} is not unix seconds"))
                })
        };
        let to_ms = match to {
            Some(text) => unix_s("to", text)?,
            None => now_ms,
        };
        let from_ms = match (range, from) {
            (Some(_), Some(_)) => {
                return Err(QueryError::Malformed(
                    "give either range or from, not both".into(),
                ));
            }
            (Some(text), None) => {
                let length = parse_duration_ms(text).ok_or_else(|| {
                    QueryError::Malformed(format!(
                        "range = {text:?} is not a duration such as 1h, 1d or 7d"
                    ))
                })?;
                to_ms.saturating_sub(length)
            }
            (None, Some(text)) => unix_s("from", text)?,
            (None, None) => to_ms.saturating_sub(3_600_000),
        };
        if from_ms >= to_ms {
            return Err(QueryError::BadRange(format!(
                "the range is empty: from ({}) must be before to ({})",
                from_ms / 1000,
                to_ms / 1000
            )));
        }
        if to_ms > now_ms + FUTURE_SLACK_MS {
            return Err(QueryError::BadRange("to is in the future".into()));
        }
        let step_ms = match step {
            Some(text) => parse_duration_ms(text).ok_or_else(|| {
                QueryError::Malformed(format!(
                    "step = {text:?} is not a duration such as 5s, 1m or 1h"
                ))
            })?,
            None => {
                let wanted = (to_ms - from_ms).div_ceil(300);
                wanted.div_ceil(interval_ms) * interval_ms
            }
        };
        if step_ms < interval_ms || step_ms % interval_ms != 0 {
            return Err(QueryError::BadRange(format!(
                "step must be a multiple of the sample interval ({} s)",
                interval_ms / 1000
            )));
        }
        let from_ms = from_ms - from_ms % step_ms;
        if to_ms - from_ms > MAX_RANGE_MS {
            return Err(QueryError::BadRange("a range is at most ten years".into()));
        }
        let points = (to_ms - from_ms).div_ceil(step_ms);
        if points > MAX_POINTS {
            return Err(QueryError::BadRange(format!(
                "{points} points asked; at most {MAX_POINTS}: use a longer step or a shorter range"
            )));
        }
        Ok(Self {
            family,
            label,
            metric: info,
            from_ms,
            to_ms,
            step_ms,
        })
    }

    /// The same query as a URL query string, for asking another node for its own series.
    pub fn to_query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        out.append_pair("node", "self")
            .append_pair("metric", self.metric.name)
            .append_pair("from", &(self.from_ms / 1000).to_string())
            .append_pair("to", &self.to_ms.div_ceil(1000).to_string())
            .append_pair("step", &format!("{}s", self.step_ms / 1000));
        if !self.label.is_empty() {
            out.append_pair(self.family.label, &self.label);
        }
        out.finish()
    }

    /// The resolution the query reads.
    pub fn resolution(&self, now_ms: u64, interval_ms: u64) -> Resolution {
        resolution::for_query(self.step_ms, self.from_ms, now_ms, interval_ms)
    }

    /// One point per step from the buckets (`start_ms`, bucket) of the range, in order.
    /// A step with no bucket is a gap.
    pub fn points(&self, buckets: &[(u64, Bucket)], interval_ms: u64) -> Vec<Point> {
        let expected = (self.step_ms / interval_ms.max(1)).max(1) as u32;
        let mut slots: BTreeMap<u64, Bucket> = BTreeMap::new();
        for (start, bucket) in buckets {
            if *start < self.from_ms || *start >= self.to_ms {
                continue;
            }
            let slot = start - (start - self.from_ms) % self.step_ms;
            slots
                .entry(slot)
                .and_modify(|b| b.add_samples_of(bucket))
                .or_insert(*bucket);
        }
        (self.from_ms..self.to_ms)
            .step_by(self.step_ms as usize)
            .map(|t| match slots.get(&t) {
                Some(b) => Point {
                    t,
                    mean: Some(b.mean()),
                    min: Some(b.min),
                    max: Some(b.max),
                    count: b.count,
                    partial: b.count < expected,
                },
                None => Point::gap(t),
            })
            .collect()
    }
}

/// The parser over arbitrary bytes, for the fuzz target (`history/fuzz`, target `history_query`;
/// its corpus is replayed by a unit test) and the tests: the bytes are a query
/// string (`metric=..&range=..&from=..&to=..&step=..`); whatever it accepts keeps the
/// invariants the store and the merge rely on.
pub fn fuzz_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(params) = Params::from_query(&text) else {
        return;
    };
    let now_ms = 1_800_000_000_000;
    let interval_ms = 5_000;
    let families = [&test_family::NODE, &test_family::STREAM];
    if let Ok(q) = RangeQuery::parse(&families, &params, now_ms, interval_ms) {
        assert!(q.from_ms < q.to_ms);
        assert!(q.step_ms >= interval_ms && q.step_ms % interval_ms == 0);
        assert_eq!(q.from_ms % q.step_ms, 0);
        assert!((q.to_ms - q.from_ms).div_ceil(q.step_ms) <= MAX_POINTS);
        assert!(q.points(&[], interval_ms).len() as u64 <= MAX_POINTS);
        // What a node asks a member is the same query.
        let asked = Params::from_query(&q.to_query_string()).expect("own query string");
        let again = RangeQuery::parse(&families, &asked, now_ms, interval_ms).expect("re-parse");
        assert_eq!(
            (again.family, &again.label, again.metric),
            (q.family, &q.label, q.metric)
        );
        assert_eq!((again.from_ms, again.step_ms), (q.from_ms, q.step_ms));
    }
}

/// One step of a node's series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the step (unix ms).
    pub t: u64,
    /// Mean of the samples; `None` for a gap.
    pub mean: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Samples behind the point.
    pub count: u32,
    /// Whether samples of the step are missing.
    pub partial: bool,
}

impl Point {
    /// A step without samples.
    pub fn gap(t: u64) -> Self {
        Self {
            t,
            mean: None,
            min: None,
            max: None,
            count: 0,
            partial: true,
        }
    }
}

/// One step of the cluster's series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClusterPoint {
    /// Start of the step (unix ms).
    pub t: u64,
    /// The nodes' means summed, or their mean ([`Aggregate`]); `None` when no node had samples.
    pub value: Option<f64>,
    /// The nodes' minimums summed, or the smallest.
    pub min: Option<f64>,
    /// The nodes' maximums summed, or the largest.
    pub max: Option<f64>,
    /// Nodes with samples in this step.
    pub nodes: usize,
    /// Nodes asked.
    pub of: usize,
    /// Whether a node is missing or had missing samples.
    pub partial: bool,
}

/// Merges the nodes' series (all from the same query, so their steps line up) into the
/// cluster's. A node without a series (down, unreachable) counts in `of` only.
pub fn merge_nodes(
    aggregate: Aggregate,
    steps: impl Iterator<Item = u64>,
    nodes: &[Option<Vec<Point>>],
) -> Vec<ClusterPoint> {
    let by_t: Vec<BTreeMap<u64, &Point>> = nodes
        .iter()
        .map(|series| {
            series
                .iter()
                .flatten()
                .filter(|p| p.mean.is_some())
                .map(|p| (p.t, p))
                .collect()
        })
        .collect();
    steps
        .map(|t| {
            let present: Vec<&Point> = by_t.iter().filter_map(|m| m.get(&t).copied()).collect();
            let n = present.len();
            let fold = |pick: fn(&Point) -> Option<f64>, combine: fn(f64, f64) -> f64| {
                present.iter().filter_map(|p| pick(p)).reduce(combine)
            };
            let (value, min, max) = match aggregate {
                Aggregate::Sum => (
                    fold(|p| p.mean, |a, b| a + b),
                    fold(|p| p.min, |a, b| a + b),
                    fold(|p| p.max, |a, b| a + b),
                ),
                Aggregate::Mean => (
                    fold(|p| p.mean, |a, b| a + b).map(|s| s / n as f64),
                    fold(|p| p.min, f64::min),
                    fold(|p| p.max, f64::max),
                ),
            };
            ClusterPoint {
                t,
                value,
                min,
                max,
                nodes: n,
                of: nodes.len(),
                partial: n < nodes.len() || present.iter().any(|p| p.partial),
            }
        })
        .collect()
}

/// A small catalogue for the fuzz target and the tests.
pub mod test_family {
    use crate::metric::{Aggregate, Family, MetricInfo};

    /// Two metrics, a mean and a sum.
    pub static NODE: Family = Family {
        name: "node",
        label: "",
        metrics: &[
            MetricInfo::new("cpu", "CPU use", "ratio", Aggregate::Mean),
            MetricInfo::new("viewers", "players", "count", Aggregate::Sum),
        ],
        max_retention_ms: u64::MAX,
    };

    /// A labelled family.
    pub static STREAM: Family = Family {
        name: "stream",
        label: "stream",
        metrics: &[MetricInfo::new(
            "viewers",
            "players",
            "count",
            Aggregate::Sum,
        )],
        max_retention_ms: 7 * 86_400_000,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000_000;
    const FIVE_S: u64 = 5_000;

    fn parse(
        range: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        step: Option<&str>,
    ) -> Result<RangeQuery, QueryError> {
        let params = Params {
            metric: Some("cpu".into()),
            range: range.map(Into::into),
            from: from.map(Into::into),
            to: to.map(Into::into),
            step: step.map(Into::into),
            ..Params::default()
        };
        RangeQuery::parse(&[&test_family::NODE], &params, NOW, FIVE_S)
    }

    #[test]
    fn bad_ranges_and_steps_are_refused_with_a_reason() {
        let now_s = (NOW / 1000).to_string();
        let earlier = (NOW / 1000 - 60).to_string();
        assert!(
            matches!(parse(None, Some(&now_s), Some(&earlier), None), Err(QueryError::BadRange(m)) if m.contains("empty"))
        );
        assert!(
            matches!(parse(Some("1h"), None, None, Some("3s")), Err(QueryError::BadRange(m)) if m.contains("multiple"))
        );
        assert!(
            matches!(parse(Some("7d"), None, None, Some("5s")), Err(QueryError::BadRange(m)) if m.contains("points"))
        );
        assert!(matches!(
            parse(Some("soon"), None, None, None),
            Err(QueryError::Malformed(_))
        ));
        assert!(matches!(
            parse(Some("1h"), Some("1"), None, None),
            Err(QueryError::Malformed(_))
        ));
        let future = (NOW / 1000 + 3_600).to_string();
        assert!(matches!(
            parse(None, None, Some(&future), None),
            Err(QueryError::BadRange(_))
        ));
        assert!(matches!(
            RangeQuery::parse(
                &[&test_family::NODE],
                &Params::from_query("metric=nope").unwrap(),
                NOW,
                FIVE_S
            ),
            Err(QueryError::UnknownMetric(..))
        ));
        let q = parse(Some("7d"), None, None, Some("1h")).expect("a week in hours");
        assert_eq!(q.from_ms % 3_600_000, 0);
        assert_eq!(q.resolution(NOW, FIVE_S).name, "1h");
    }

    #[test]
    fn a_label_names_a_series_of_its_family_and_nothing_else() {
        let families = [&test_family::NODE, &test_family::STREAM];
        let parse = |text: &str| {
            Params::from_query(text).and_then(|p| RangeQuery::parse(&families, &p, NOW, FIVE_S))
        };
        let q = parse("metric=viewers&stream=live%2Fcam&range=1h").expect("a stream's series");
        assert_eq!((q.family.name, q.label.as_str()), ("stream", "live/cam"));
        assert!(q.to_query_string().contains("stream=live%2Fcam"));
        assert!(matches!(
            parse("metric=cpu&stream=live/cam"),
            Err(QueryError::UnknownMetric(..))
        ));
        assert!(
            matches!(parse("metric=viewers&edge=a"), Err(QueryError::Malformed(m)) if m.contains("stream"))
        );
        assert!(
            matches!(parse("metric=viewers&stream=a&app=b"), Err(QueryError::Malformed(m)) if m.contains("one series"))
        );
        assert!(matches!(
            parse("metric=viewers&stream="),
            Err(QueryError::Malformed(_))
        ));
        assert!(
            matches!(parse("metric=cpu&metric=cpu"), Err(QueryError::Malformed(m)) if m.contains("twice"))
        );
        assert_eq!(parse("metric=cpu").expect("the node's").family.name, "node");
    }

    #[test]
    fn fuzz_corpus_replays_cleanly() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/history_query");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            fuzz_query(&std::fs::read(entry.unwrap().path()).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus in {}", dir.display());
    }

    #[test]
    fn steps_without_samples_are_gaps_and_short_steps_are_partial() {
        let q = parse(Some("5m"), None, None, Some("1m")).expect("valid");
        let first = q.from_ms;
        let buckets: Vec<(u64, Bucket)> = (0..12)
            .map(|i| (first + i * FIVE_S, Bucket::of(i as f64, 1)))
            .chain([(first + 120_000, Bucket::of(7.0, 1))])
            .collect();
        let points = q.points(&buckets, FIVE_S);
        assert_eq!(points[0].mean, Some(5.5));
        assert!(!points[0].partial);
        assert_eq!(points[1], Point::gap(first + 60_000));
        assert_eq!(points[2].count, 1);
        assert!(points[2].partial);
    }

    proptest! {
        #[test]
        fn any_query_string_is_refused_or_keeps_the_invariants(
            text in "(metric=(cpu|viewers|x)|range=[0-9]{0,6}[smhdx]?|from=[0-9]{0,12}|to=[0-9]{0,12}|step=[0-9]{0,7}[smhd]?|stream=[a-z/%]{0,6}|region=a)(&(metric=cpu|stream=live|range=[0-9]{1,4}[mhd]|from=[0-9]{10}|to=[0-9]{10}|step=[0-9]{1,5}[smh]?)){0,4}",
        ) {
            fuzz_query(text.as_bytes());
        }

        #[test]
        fn cluster_points_count_the_nodes_behind_them(
            values in proptest::collection::vec(proptest::option::of(0.0f64..1e6), 1..8),
        ) {
            let nodes: Vec<Option<Vec<Point>>> = values
                .iter()
                .map(|v| v.map(|v| vec![Point { t: 0, mean: Some(v), min: Some(v), max: Some(v), count: 1, partial: false }]))
                .collect();
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            let sum = merge_nodes(Aggregate::Sum, [0u64].into_iter(), &nodes)[0];
            let mean = merge_nodes(Aggregate::Mean, [0u64].into_iter(), &nodes)[0];
            prop_assert_eq!(sum.nodes, present.len());
            prop_assert_eq!(sum.of, values.len());
            prop_assert_eq!(sum.partial, present.len() < values.len());
            if present.is_empty() {
                prop_assert_eq!(sum.value, None);
                prop_assert_eq!(mean.value, None);
            } else {
                let total: f64 = present.iter().sum();
                prop_assert!((sum.value.unwrap() - total).abs() < 1e-6);
                prop_assert!((mean.value.unwrap() - total / present.len() as f64).abs() < 1e-6);
            }
        }
    }
}
