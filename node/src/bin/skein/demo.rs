//! `skein demo`: a whole local cluster on loopback — three origins (127.0.3.x, region c), two
//! regions of two edges each (127.0.1.x region a, 127.0.2.x region b), and `skein-dns` on
//! 127.0.0.1 answering for the regions — each a separate process, as in production. It prints
//! the cluster status and the commands to publish, play, query DNS and try a failover;
//! Ctrl-C stops everything it started.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::stream_auth;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// RTMP port of every node (each node has its own loopback address).
    #[arg(long, default_value_t = 1935)]
    pub rtmp_port: u16,
    /// HTTP port of every node (HTTP-FLV, API, metrics).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Internal QUIC port of every node (Raft, join, relay).
    #[arg(long, default_value_t = 7946)]
    pub internal_port: u16,
    /// Port of skein-dns on 127.0.0.1 (UDP and TCP).
    #[arg(long, default_value_t = 5353)]
    pub dns_port: u16,
    /// HTTP port of skein-dns on 127.0.0.1 (its metrics and the view the dashboard's GeoDNS
    /// page reads).
    #[arg(long, default_value_t = 8053)]
    pub dns_http_port: u16,
    /// Stream key used in the printed commands.
    #[arg(long, default_value = "demo")]
    pub key: String,
    /// Directory for the nodes' data and logs (default: a new temporary directory, removed
    /// when the demo stops).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One demo node: name, region, loopback address, roles.
struct Member {
    name: &'static str,
    region: &'static str,
    ip: Ipv4Addr,
    roles: &'static str,
}

const MEMBERS: [Member; 7] = [
    member("origin-1", "c", [127, 0, 3, 1], "origin"),
    member("origin-2", "c", [127, 0, 3, 2], "origin"),
    member("origin-3", "c", [127, 0, 3, 3], "origin"),
    member("edge-a1", "a", [127, 0, 1, 1], "edge,origin"),
    member("edge-a2", "a", [127, 0, 1, 2], "edge,origin"),
    member("edge-b1", "b", [127, 0, 2, 1], "edge,origin"),
    member("edge-b2", "b", [127, 0, 2, 2], "edge,origin"),
];

const fn member(
    name: &'static str,
    region: &'static str,
    ip: [u8; 4],
    roles: &'static str,
) -> Member {
    Member {
        name,
        region,
        ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        roles,
    }
}

/// Coordinates of the demo regions; the demo MMDB of skein-dns places 127.0.1.0/24 and
/// 192.0.2.0/24 in a, 127.0.2.0/24 and 198.51.100.0/24 in b, 127.0.3.0/24 and 203.0.113.0/24
/// in c at these places.
fn coordinates(region: &str) -> &'static str {
    match region {
        "a" => "50.11,8.68",
        "b" => "38.95,-77.45",
        _ => "1.35,103.82",
    }
}

const ZONE: &str = "skein.test";

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Managed {
    name: String,
    child: Child,
}

impl Managed {
    /// Sends SIGTERM unless the child was already reaped (its pid may belong to another
    /// process by then).
    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: plain kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Waits until `deadline` for the child to exit, then kills it.
    fn reap(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.terminate();
        self.reap(Instant::now() + Duration::from_secs(3));
    }
}

struct Demo {
    /// Cancelled on Ctrl-C; start-up gives up when it is.
    stop: CancellationToken,
    dir: PathBuf,
    remove_dir: bool,
    exe: PathBuf,
    ports: Ports,
    children: Vec<Managed>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // All at once (each node stops in parallel), then wait for them with one deadline.
        for child in &mut self.children {
            child.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            child.reap(deadline);
        }
        self.children.clear();
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    rtmp: u16,
    http: u16,
    internal: u16,
    dns: u16,
    dns_http: u16,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let ports = Ports {
        rtmp: args.rtmp_port,
        http: args.http_port,
        internal: args.internal_port,
        dns: args.dns_port,
        dns_http: args.dns_http_port,
    };
    check_ports(ports)?;
    let (dir, remove_dir) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("skein-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let stop = crate::process::stop_signal();
    let mut demo = Demo {
        stop: stop.clone(),
        dir,
        remove_dir,
        exe: std::env::current_exe().context("cannot find the skein executable")?,
        ports,
        children: Vec::new(),
    };
    // Blocking on purpose, on the thread that runs `block_on` and lives until the demo ends:
    // the children's parent-death signal is tied to the thread that forked them.
    let dns = demo.start_all()?;
    // Publishing needs a token (the default policy): mint one for the printed stream.
    let token = demo.publish_token(&args.key)?;
    println!("{}", banner(&demo, &args.key, &token, dns));
    let _ = std::io::stdout().flush();
    stop.cancelled().await;
    println!("stopping the demo cluster");
    drop(demo);
    Ok(())
}

impl Demo {
    /// Starts the nodes and skein-dns; returns whether skein-dns runs.
    fn start_all(&mut self) -> anyhow::Result<bool> {
        std::fs::write(
            self.dir.join("node.toml"),
            format!(
                "# Demo: players opened before the publisher wait a minute for it.\n\
             [hub]\nplay_wait_secs = 60\n\n[cluster]\npull_hold_ms = 60000\n\n\
             # The dashboard's GeoDNS page reads skein-dns here.\n\
             [dashboard]\ndns = [\"127.0.0.1:{}\"]\n",
                self.ports.dns_http
            ),
        )?;
        let join = self.init(&MEMBERS[0])?;
        // Origins first, so the origin pool fills with them; then the edges.
        for m in &MEMBERS[1..3] {
            self.join(m, &join)?;
        }
        self.wait_for("3 live origins", |s| s.origin_pool.live.len() >= 3)?;
        for m in &MEMBERS[3..] {
            self.join(m, &join)?;
        }
        self.wait_for("all nodes up with a leader", |s| {
            s.leader.is_some()
                && s.nodes.len() == MEMBERS.len()
                && s.nodes
                    .iter()
                    .all(|n| n.health == skein_raft::NodeHealth::Up)
                && s.regions.iter().all(|r| r.lat.is_some())
        })?;
        self.start_dns()
    }

    fn node_command(&self, m: &Member) -> Command {
        let mut cmd = Command::new(&self.exe);
        let ip = IpAddr::V4(m.ip);
        cmd.arg("--config")
            .arg(self.dir.join("node.toml"))
            .args(["--name", m.name, "--region", m.region, "--roles", m.roles])
            .arg("--data-dir")
            .arg(self.dir.join(m.name))
            .args([
                "--internal",
                &SocketAddr::new(ip, self.ports.internal).to_string(),
                "--rtmp-listen",
                &SocketAddr::new(ip, self.ports.rtmp).to_string(),
                "--http-listen",
                &SocketAddr::new(ip, self.ports.http).to_string(),
                "--region-coordinates",
                coordinates(m.region),
            ]);
        cmd
    }

    /// Starts the first origin with `skein init`; returns the join arguments it printed.
    fn init(&mut self, m: &Member) -> anyhow::Result<Vec<String>> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("init");
        cmd.args(self.node_command(m).get_args());
        cmd.args(["--origin-target", "3"]);
        let log = self.log(m.name)?;
        cmd.stdout(Stdio::piped()).stderr(log);
        let mut child = self.spawn(m.name, cmd)?;
        let stdout = child.child.stdout.take().context("init has no stdout")?;
        self.children.push(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !self.stop.is_cancelled() {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(rest) = line.trim().strip_prefix("skein join ") {
                let words: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                // Drop the trailing "--region R": each node sets its own.
                let cut = words
                    .iter()
                    .position(|w| w == "--region")
                    .unwrap_or(words.len());
                return Ok(words[..cut].to_vec());
            }
        }
        bail!(
            "{} did not print a join command; see {}",
            m.name,
            self.log_path(m.name).display()
        )
    }

    fn join(&mut self, m: &Member, join: &[String]) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("join").args(join);
        cmd.args(self.node_command(m).get_args());
        cmd.stdout(Stdio::null()).stderr(self.log(m.name)?);
        let child = self.spawn(m.name, cmd)?;
        self.children.push(child);
        Ok(())
    }

    fn start_dns(&mut self) -> anyhow::Result<bool> {
        let dns = self.exe.with_file_name("skein-dns");
        if !dns.exists() {
            println!(
                "skein-dns is not built next to {}; build it (cargo build -p skein-dns) for the GeoDNS part",
                self.exe.display()
            );
            return Ok(false);
        }
        let mmdb = self.dir.join("demo.mmdb");
        let status = Command::new(&dns)
            .arg("gen-demo-mmdb")
            .arg("--out")
            .arg(&mmdb)
            .stdout(Stdio::null())
            .status()
            .context("cannot run skein-dns gen-demo-mmdb")?;
        if !status.success() {
            bail!("skein-dns gen-demo-mmdb failed");
        }
        let config = self.dir.join("skein-dns.toml");
        std::fs::write(&config, dns_config(self.ports))?;
        let mut cmd = Command::new(&dns);
        cmd.arg("--config").arg(&config);
        cmd.stdout(Stdio::null()).stderr(self.log("skein-dns")?);
        let mut child = self.spawn("skein-dns", cmd)?;
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = child.child.try_wait() {
            bail!(
                "skein-dns exited ({status}); see {}",
                self.log_path("skein-dns").display()
            );
        }
        self.children.push(child);
        Ok(true)
    }

    fn spawn(&self, name: &str, mut cmd: Command) -> anyhow::Result<Managed> {
        // SAFETY: prctl in the forked child before exec; it only asks the kernel to send
        // SIGTERM when the forking thread dies, so no node outlives a killed demo.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Managed {
            name: name.to_owned(),
            child,
        })
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        let path = self.log_path(name);
        std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))
    }

    fn api(&self) -> String {
        format!("http://{}:{}", MEMBERS[0].ip, self.ports.http)
    }

    /// A day-long publish token for `live/KEY`, minted by the first node.
    fn publish_token(&self, key: &str) -> anyhow::Result<String> {
        let admin_args = admin::AdminArgs {
            api: self.api(),
            token: admin::AdminTokenArgs::default(),
            data_dir: self.dir.join(MEMBERS[0].name),
        };
        let stream = format!("live/{key}");
        let day = Duration::from_secs(86_400);
        let (token, _) = stream_auth::mint_through_api(
            &admin_args,
            skein_node::auth::Action::Publish,
            &stream,
            day,
            None,
        )?;
        Ok(token)
    }

    fn status(&self) -> Option<skein_raft::ClusterStatus> {
        admin::fetch_status(&self.api(), Duration::from_secs(2)).ok()
    }

    /// Polls the cluster status until `done` holds (bounded), failing with the nodes' state.
    fn wait_for(
        &mut self,
        what: &str,
        done: impl Fn(&skein_raft::ClusterStatus) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.stop.is_cancelled() {
                bail!("stopped while starting");
            }
            for child in &mut self.children {
                if let Ok(Some(status)) = child.child.try_wait() {
                    bail!(
                        "{} exited ({status}); see {}",
                        child.name,
                        self.dir
                            .join("logs")
                            .join(format!("{}.log", child.name))
                            .display()
                    );
                }
            }
            if self.status().is_some_and(|s| done(&s)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the demo cluster did not reach \"{what}\" within 60 s; logs in {}",
            self.dir.join("logs").display()
        )
    }
}

fn dns_config(ports: Ports) -> String {
    let seeds: Vec<String> = MEMBERS
        .iter()
        .take(3)
        .map(|m| format!("\"{}:{}\"", m.ip, ports.http))
        .collect();
    format!(
        "# skein-dns for the demo: zone {ZONE}, membership from the cluster.\n\
         [listen]\nudp = [\"127.0.0.1:{dns}\"]\ntcp = [\"127.0.0.1:{dns}\"]\nudp_workers = 1\nmetrics = \"127.0.0.1:{dns_http}\"\n\n\
         [[zones]]\norigin = \"{ZONE}\"\nservices = [\"live\"]\n\
         soa = {{ rname = \"hostmaster.{ZONE}\", serial = 1, minimum = 30 }}\n\
         ns = [{{ name = \"ns1.{ZONE}\", addrs = [\"127.0.0.1\"] }}]\n\n\
         [geo]\ncity = \"demo.mmdb\"\ndefault_region = \"a\"\n\n\
         [health]\ninterval_ms = 1000\nfall = 3\nrise = 2\n\n\
         [cluster]\nseeds = [{seeds}]\npoll_interval_ms = 1000\ncache = \"dns-cluster.json\"\n",
        dns = ports.dns,
        dns_http = ports.dns_http,
        seeds = seeds.join(", "),
    )
}

/// Fails early, with a hint, when a port the demo needs is taken on one of its addresses.
fn check_ports(ports: Ports) -> anyhow::Result<()> {
    for m in &MEMBERS {
        for (port, what, udp) in [
            (ports.rtmp, "--rtmp-port", false),
            (ports.http, "--http-port", false),
            (ports.internal, "--internal-port", true),
        ] {
            let addr = SocketAddr::new(IpAddr::V4(m.ip), port);
            let free = if udp {
                UdpSocket::bind(addr).is_ok()
            } else {
                TcpListener::bind(addr).is_ok()
            };
            if !free {
                bail!(
                    "cannot use {addr} for {}: something is listening there (another demo, or a \
                     server on 0.0.0.0:{port}); choose another port with {what}",
                    m.name
                );
            }
        }
    }
    let dns = SocketAddr::from(([127, 0, 0, 1], ports.dns));
    if UdpSocket::bind(dns).is_err() || TcpListener::bind(dns).is_err() {
        bail!("cannot use {dns} for skein-dns: it is taken; choose another port with --dns-port");
    }
    let dns_http = SocketAddr::from(([127, 0, 0, 1], ports.dns_http));
    if TcpListener::bind(dns_http).is_err() {
        bail!(
            "cannot use {dns_http} for skein-dns's HTTP: it is taken; choose another port with --dns-http-port"
        );
    }
    Ok(())
}

fn banner(demo: &Demo, key: &str, token: &str, dns: bool) -> String {
    let p = demo.ports;
    let edge = |i: usize| MEMBERS[i].ip;
    let (a1, b1) = (edge(3), edge(5));
    let publish_url = format!("rtmp://{a1}:{}/live/{key}?token={token}", p.rtmp);
    let play_url = format!("rtmp://{b1}:{}/live/{key}", p.rtmp);
    let flv_url = format!("http://{b1}:{}/live/{key}.flv", p.http);
    let status = demo
        .status()
        .map(|s| admin::render_status(&s))
        .unwrap_or_default();
    let pids: Vec<String> = demo
        .children
        .iter()
        .map(|c| format!("{} {}", c.name, c.child.id()))
        .collect();
    let mut out = format!(
        "\nDashboard: {api}/dashboard/   (every node serves it: cluster, nodes, streams with a player, GeoDNS, events)\n\n\
         Skein demo: a local cluster on loopback, one process per node. Ctrl-C stops everything.\n\n\
         {status}\nprocesses (name pid): {}\nlogs and data: {}\n\n\
         Publish a test stream to an edge in region a (H.264 + AAC, 720p30; publishing needs a token, \
         this one is for live/{key} and valid a day — mint more with skein token publish live/KEY --api {api} --data-dir {first}):\n  \
         ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
         -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2500k -c:a aac -b:a 128k -f flv '{publish_url}'\n\n\
         Play it from an edge in region b (one pull from the stream's origin, shared by all viewers of that edge):\n  \
         RTMP:      ffplay {play_url}\n  HTTP-FLV:  ffplay {flv_url}\n\n\
         Look at it:\n  cluster:   {api}/api/v1/cluster   (or: skein status --api {api})\n  \
         relay:     http://{b1}:{http}/api/v1/relay   (which origin the edge pulls from)\n  \
         streams:   http://{b1}:{http}/api/v1/streams\n  metrics:   http://{b1}:{http}/metrics\n\n\
         Failover: kill -9 the origin listed in `pushed_in` of http://127.0.3.N:{http}/api/v1/relay — the \
         player keeps playing from the next origin; kill all three and edges are promoted to origins.\n",
        pids.join(", "),
        demo.dir.display(),
        api = demo.api(),
        http = p.http,
        first = demo.dir.join(MEMBERS[0].name).display(),
    );
    if dns {
        let dig = format!("dig @127.0.0.1 -p {} live.{ZONE} A +short", p.dns);
        out.push_str(&format!(
            "\nGeoDNS (skein-dns on 127.0.0.1:{dns}, zone {ZONE}, probing every edge each second):\n  \
             {dig} +subnet=192.0.2.1/24      # a client in region a gets region a's edges\n  \
             {dig} +subnet=198.51.100.1/24   # a client in region b gets region b's edges\n  \
             {dig} -b 127.0.2.50             # no ECS: located by the source address (region b)\n  \
             Failover: kill the two region a edges (pids above) and repeat the first query: within \
             about 3 s the answer moves to region b.\n",
            dns = p.dns,
        ));
    }
    out
}
