//! `skein demo`: a media node on loopback with the commands to publish and play printed out.

use std::net::{IpAddr, SocketAddr};

use clap::Args;

use crate::config::Config;
use crate::node::RunningNode;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Loopback address the demo listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// RTMP port (0 picks a free one).
    #[arg(long, default_value_t = 1935)]
    pub rtmp_port: u16,
    /// HTTP port for HTTP-FLV, API and metrics (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Stream key used in the printed commands.
    #[arg(long, default_value = "demo")]
    pub key: String,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.node.name = "demo-edge".into();
    config.node.region = "local".into();
    // Players opened before the publisher wait for it instead of being refused.
    config.hub.play_wait_secs = 60;
    config.rtmp.listen = SocketAddr::new(args.address, args.rtmp_port);
    config.http.listen = SocketAddr::new(args.address, args.http_port);
    let node = match RunningNode::start(config.clone()).await {
        Ok(node) => node,
        Err(e) => {
            // The well-known ports may be taken on a developer machine; any port will do.
            tracing::warn!("{e:#}; using free ports instead");
            config.rtmp.listen.set_port(0);
            config.http.listen.set_port(0);
            RunningNode::start(config).await?
        }
    };
    println!("{}", banner(node.rtmp_addr, node.http_addr, &args.key));
    node.wait(crate::cli::stop_signal()).await;
    Ok(())
}

fn banner(rtmp: SocketAddr, http: SocketAddr, key: &str) -> String {
    let publish_url = format!("rtmp://{rtmp}/live/{key}");
    let flv_url = format!("http://{http}/live/{key}.flv");
    format!(
        "\nSkein demo is running (one media node on loopback). Ctrl-C stops it.\n\n\
         Publish a test stream (H.264 + AAC, 720p30):\n  \
         ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
         -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2500k -c:a aac -b:a 128k -f flv {publish_url}\n\n\
         Play it:\n  RTMP:      ffplay {publish_url}\n  HTTP-FLV:  ffplay {flv_url}\n\n\
         Look at it:\n  streams:   http://{http}/api/v1/streams\n  clients:   http://{http}/api/v1/clients\n  \
         summary:   http://{http}/api/v1/summary\n  metrics:   http://{http}/metrics\n\n\
         Load it:\n  skein bench play --url {publish_url} --players 100 --duration 10\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_names_every_url() {
        let text = banner(
            "127.0.0.1:1935".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            "k",
        );
        assert!(text.contains("rtmp://127.0.0.1:1935/live/k"));
        assert!(text.contains("http://127.0.0.1:8080/live/k.flv"));
        assert!(text.contains("/api/v1/streams"));
    }
}
