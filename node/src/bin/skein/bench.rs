//! `skein bench`: a load generator speaking RTMP with our own client. `play` attaches N players
//! to one stream and measures first-frame time, the worst gap between video frames each player
//! saw, and throughput; `publish` runs M paced synthetic publishers.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde::Serialize;
use tokio::task::JoinSet;

use skein_node::client::{Percentiles, RtmpClient, RtmpUrl, synthetic};
use skein_node::rtmp::client::ClientEvent;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// N players on one stream.
    Play(PlayArgs),
    /// M synthetic publishers (H.264/AAC-shaped payloads at a set bit rate).
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// Stream to play, rtmp://host:port/app/key.
    #[arg(long)]
    pub url: String,
    /// Number of players.
    #[arg(long, default_value_t = 100)]
    pub players: usize,
    /// How long each player stays, in seconds, after all have been started.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Players started per second.
    #[arg(long, default_value_t = 500.0)]
    pub connect_rate: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Where to publish, rtmp://host:port/app/key; with several publishers the keys are KEY-0,
    /// KEY-1, ...
    #[arg(long)]
    pub url: String,
    /// Number of publishers.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Seconds to publish.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Video bit rate per publisher, kbit/s.
    #[arg(long, default_value_t = 2500)]
    pub bitrate_kbps: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Frames per GOP (keyframe interval).
    #[arg(long, default_value_t = 60)]
    pub gop: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Play(args) => {
            let report = play(&args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.text());
            }
        }
        BenchCommand::Publish(args) => {
            let report = publish(&args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.text());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct PlayerOutcome {
    error: Option<String>,
    started: bool,
    first_frame: Option<Duration>,
    worst_gap: Option<Duration>,
    video_frames: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PlayReport {
    pub url: String,
    pub players: usize,
    pub players_started: usize,
    pub players_with_video: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub first_frame_ms: Option<Percentiles>,
    pub worst_gap_ms: Option<Percentiles>,
    pub video_frames: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub throughput_mbps: f64,
}

impl PlayReport {
    fn text(&self) -> String {
        let pct = |p: &Option<Percentiles>| {
            p.as_ref().map_or("n/a".to_owned(), |p| {
                format!(
                    "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    p.p50, p.p95, p.p99, p.max
                )
            })
        };
        format!(
            "players:          {} started, {} received video, {} errors (of {})\n\
             first frame:      {}\n\
             worst gap/player: {}\n\
             received:         {} video frames, {:.1} MB in {:.1} s = {:.1} Mbit/s{}",
            self.players_started,
            self.players_with_video,
            self.errors,
            self.players,
            pct(&self.first_frame_ms),
            pct(&self.worst_gap_ms),
            self.video_frames,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.throughput_mbps,
            self.first_error
                .as_ref()
                .map_or(String::new(), |e| format!("\nfirst error:      {e}")),
        )
    }
}

async fn play_one(url: RtmpUrl, stop_at: Instant) -> PlayerOutcome {
    let mut outcome = PlayerOutcome::default();
    let start = Instant::now();
    let result = async {
        let mut client = RtmpClient::connect(&url).await?;
        client.play(&url.key, Duration::from_secs(10)).await?;
        outcome.started = true;
        let mut last_video: Option<Instant> = None;
        loop {
            let left = stop_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let event = match tokio::time::timeout(left, client.next_event()).await {
                Ok(event) => event?,
                Err(_) => break,
            };
            if let ClientEvent::Video { .. } = event {
                let now = Instant::now();
                match last_video {
                    None => outcome.first_frame = Some(now - start),
                    Some(prev) => {
                        let gap = now - prev;
                        outcome.worst_gap = Some(outcome.worst_gap.map_or(gap, |w| w.max(gap)));
                    }
                }
                last_video = Some(now);
                outcome.video_frames += 1;
            }
        }
        outcome.bytes = client.bytes_received();
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        outcome.error = Some(format!("{e:#}"));
    }
    outcome
}

pub async fn play(args: &PlayArgs) -> anyhow::Result<PlayReport> {
    let url = RtmpUrl::parse(&args.url)?;
    anyhow::ensure!(args.players > 0, "--players must be at least 1");
    anyhow::ensure!(args.connect_rate > 0.0, "--connect-rate must be positive");
    let ramp = Duration::from_secs_f64(args.players as f64 / args.connect_rate);
    let started = Instant::now();
    let stop_at = started + ramp + Duration::from_secs_f64(args.duration);
    let mut tasks = JoinSet::new();
    let pause = Duration::from_secs_f64(1.0 / args.connect_rate);
    for _ in 0..args.players {
        tasks.spawn(play_one(url.clone(), stop_at));
        tokio::time::sleep(pause).await;
    }
    let mut outcomes = Vec::with_capacity(args.players);
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.context("player task failed")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let bytes: u64 = outcomes.iter().map(|o| o.bytes).sum();
    Ok(PlayReport {
        url: url.to_string(),
        players: args.players,
        players_started: outcomes.iter().filter(|o| o.started).count(),
        players_with_video: outcomes.iter().filter(|o| o.video_frames > 0).count(),
        errors: outcomes.iter().filter(|o| o.error.is_some()).count(),
        first_error: outcomes.iter().find_map(|o| o.error.clone()),
        first_frame_ms: Percentiles::of(
            outcomes
                .iter()
                .filter_map(|o| o.first_frame.map(ms))
                .collect(),
        ),
        worst_gap_ms: Percentiles::of(
            outcomes
                .iter()
                .filter_map(|o| o.worst_gap.map(ms))
                .collect(),
        ),
        video_frames: outcomes.iter().map(|o| o.video_frames).sum(),
        bytes,
        seconds,
        throughput_mbps: bytes as f64 * 8.0 / seconds / 1e6,
    })
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub url: String,
    pub publishers: usize,
    pub publishers_started: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub video_frames: u64,
    pub payload_bytes: u64,
    pub seconds: f64,
}

impl PublishReport {
    fn text(&self) -> String {
        format!(
            "publishers: {} started, {} errors (of {})\nsent:       {} video frames, {:.1} MB of payload in {:.1} s{}",
            self.publishers_started,
            self.errors,
            self.publishers,
            self.video_frames,
            self.payload_bytes as f64 / 1e6,
            self.seconds,
            self.first_error
                .as_ref()
                .map_or(String::new(), |e| format!("\nfirst error: {e}")),
        )
    }
}

/// Payloads shaped like FLV H.264/AAC tag bodies; the node inspects only their first bytes.
async fn publish_one(
    url: RtmpUrl,
    args: (u64, u32, u32),
    stop_at: Instant,
) -> (Option<String>, bool, u64, u64) {
    let (bitrate_kbps, fps, gop) = args;
    let mut started = false;
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let result = async {
        let mut client = RtmpClient::connect(&url).await?;
        client.publish(&url.key, Duration::from_secs(10)).await?;
        started = true;
        let frame_size = (bitrate_kbps * 1000 / 8 / u64::from(fps.max(1))) as usize;
        let session = client.session();
        session.send_video(0, &synthetic::avc_sequence_header());
        session.send_audio(0, &synthetic::aac_sequence_header());
        let origin = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps.max(1))));
        let audio = synthetic::aac_frame();
        let mut audio_sent = 0u64;
        while Instant::now() < stop_at {
            tick.tick().await;
            let ts = origin.elapsed().as_millis() as u32;
            let frame: Bytes = synthetic::video_frame(
                frames.is_multiple_of(u64::from(gop.max(1))),
                frame_size,
                frames as u32,
            );
            bytes += frame.len() as u64;
            client.session().send_video(ts, &frame);
            // AAC at 44.1 kHz: one 1024-sample frame every ~23.2 ms.
            while (audio_sent * 1024 * 1000) / 44_100 <= u64::from(ts) {
                let ats = ((audio_sent * 1024 * 1000) / 44_100) as u32;
                client.session().send_audio(ats, &audio);
                bytes += audio.len() as u64;
                audio_sent += 1;
            }
            client.flush().await?;
            frames += 1;
        }
        client.session().close();
        client.flush().await?;
        anyhow::Ok(())
    }
    .await;
    (
        result.err().map(|e| format!("{e:#}")),
        started,
        frames,
        bytes,
    )
}

pub async fn publish(args: &PublishArgs) -> anyhow::Result<PublishReport> {
    let url = RtmpUrl::parse(&args.url)?;
    anyhow::ensure!(args.publishers > 0, "--publishers must be at least 1");
    anyhow::ensure!(
        args.fps > 0 && args.gop > 0,
        "--fps and --gop must be positive"
    );
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(args.duration);
    let mut tasks = JoinSet::new();
    for i in 0..args.publishers {
        let target = if args.publishers == 1 {
            url.clone()
        } else {
            url.with_key(&format!("{}-{i}", url.key))
        };
        tasks.spawn(publish_one(
            target,
            (args.bitrate_kbps, args.fps, args.gop),
            stop_at,
        ));
    }
    let mut report = PublishReport {
        url: url.to_string(),
        publishers: args.publishers,
        publishers_started: 0,
        errors: 0,
        first_error: None,
        video_frames: 0,
        payload_bytes: 0,
        seconds: 0.0,
    };
    while let Some(joined) = tasks.join_next().await {
        let (error, started, frames, bytes) = joined.context("publisher task failed")?;
        report.publishers_started += usize::from(started);
        report.video_frames += frames;
        report.payload_bytes += bytes;
        if let Some(e) = error {
            report.errors += 1;
            report.first_error.get_or_insert(e);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        let one = Percentiles::of(vec![7.0]).unwrap();
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert!(Percentiles::of(vec![]).is_none());
    }
}
