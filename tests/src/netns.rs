//! A routed network of Linux network namespaces for partition tests: one namespace per node,
//! one router namespace per region and a backbone namespace joining the region routers, all
//! linked by veth pairs the test creates. Every link is point to point, so every packet between
//! two nodes goes through at least one region router, and a cut is a pair of `ip rule …
//! blackhole` rules in the routers: a forwarded packet that matches is dropped without an
//! answer, as on a real partition (a sender sees silence, never an error). That lets one
//! mechanism cut a node from a node, a node from a region, a region from a region, or a node
//! from everything, and heal each cut alone.
//!
//! Addresses are private and exist only inside these namespaces: region `i` (1-based, in the
//! order given) is `10.77.i.0/24`, its nodes `10.77.i.1…`, its router `10.77.i.254`; the
//! backbone links are `10.77.0.i` (router side) and `10.77.0.254`. No namespace has a link
//! to the host, so nothing routes out of them. Everything, namespaces and every process in
//! them, is removed on drop, also when the test panics.
//!
//! The test process itself stays in the host's namespace: [`in_netns`] runs a closure on a
//! thread moved into a node's namespace (for the test's HTTP requests), and [`command`]
//! builds `ip netns exec NS program` for the processes the test starts there.
//!
//! Delay and loss (`tc netem`) are not here: the test kernels these run on may lack
//! `sch_netem`; cuts only need routing.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The whole `10.77.0.0/16` of a network: what [`Place::Everything`] stands for.
const NETWORK_PREFIX: &str = "10.77.0.0/16";
/// Host octet of a region's router on its nodes' links, and of the backbone on its links.
const ROUTER_HOST: u8 = 254;

/// One side of a cut: a node, a whole region, or every address of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Node(String),
    Region(String),
    Everything,
}

/// A node's place in the network: its namespace and its address.
#[derive(Debug, Clone)]
pub struct NetNode {
    pub name: String,
    pub region: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// The namespaces of one test; all of them and their processes are removed on drop.
pub struct Network {
    tag: String,
    regions: Vec<String>,
    nodes: Vec<NetNode>,
    cuts: Vec<(Place, Place)>,
}

/// Whether this machine can run namespace tests: root and a working `ip netns`. `Err` says
/// what is missing, for the test's skip message.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid(2) only reads the process credentials.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root".into());
    }
    ip(&["netns", "list"]).map(|_| ())
}

/// Runs `ip args`; its stdout, or an error with its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Like [`ip`], for the set-up steps that must work: panics with the error.
fn must_ip(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// `ip netns exec NETNS program`: a command to start inside a namespace.
pub fn command(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns]).arg(program);
    command
}

/// Runs `work` on a thread that has entered the namespace `netns`, so that the sockets it opens
/// are that namespace's; the calling thread stays where it is.
pub fn in_netns<T: Send>(netns: &str, work: impl FnOnce() -> T + Send) -> T {
    let handle = File::open(format!("/run/netns/{netns}"))
        .unwrap_or_else(|e| panic!("network namespace {netns}: {e}"));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) on a namespace file descriptor we hold open; it changes only
                // this thread's network namespace, and the thread ends with `work`.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {netns}: {}", std::io::Error::last_os_error());
                work()
            })
            .join()
            .expect("work inside the namespace panicked")
    })
}

/// Kills every process in each namespace (`ip netns pids`), then deletes the namespaces.
pub fn remove_namespaces(namespaces: &[String]) {
    for netns in namespaces {
        if let Ok(pids) = ip(&["netns", "pids", netns]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    for netns in namespaces {
        let _ = ip(&["netns", "del", netns]);
    }
}

impl Network {
    /// The backbone and one router per region, named after this test process.
    pub fn new(test: &str, regions: &[&str]) -> Self {
        let network = Self {
            tag: format!("{test}{}", std::process::id() % 100_000),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            nodes: Vec::new(),
            cuts: Vec::new(),
        };
        let backbone = network.backbone();
        network.add_namespace(&backbone);
        for (i, region) in regions.iter().enumerate() {
            let router = network.router(region);
            network.add_namespace(&router);
            let index = i + 1;
            let uplink = Ipv4Addr::new(10, 77, 0, index as u8);
            let backbone_port = format!("r{index}");
            link(
                (
                    &backbone,
                    &backbone_port,
                    Ipv4Addr::new(10, 77, 0, ROUTER_HOST),
                ),
                (&router, "up0", uplink),
            );
            // The region's addresses are behind its router; everything else behind the backbone.
            must_ip(&[
                "-n",
                &backbone,
                "route",
                "add",
                &format!("10.77.{index}.0/24"),
                "via",
                &uplink.to_string(),
                "dev",
                &backbone_port,
            ]);
            must_ip(&[
                "-n",
                &router,
                "route",
                "add",
                NETWORK_PREFIX,
                "via",
                &format!("10.77.0.{ROUTER_HOST}"),
                "dev",
                "up0",
            ]);
        }
        network
    }

    fn backbone(&self) -> String {
        format!("{}-bb", self.tag)
    }

    fn region_index(&self, region: &str) -> usize {
        1 + self
            .regions
            .iter()
            .position(|r| r == region)
            .unwrap_or_else(|| panic!("no region {region:?} in {:?}", self.regions))
    }

    fn router(&self, region: &str) -> String {
        format!("{}-r{}", self.tag, self.region_index(region))
    }

    /// A namespace with loopback up and forwarding on (routers forward; nodes never have a
    /// second link, so for them it changes nothing).
    fn add_namespace(&self, netns: &str) {
        let _ = ip(&["netns", "del", netns]);
        must_ip(&["netns", "add", netns]);
        must_ip(&["-n", netns, "link", "set", "lo", "up"]);
        let out = command(netns, "sh")
            .args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            .output()
            .expect("run sh");
        assert!(out.status.success(), "ip_forward in {netns}");
    }

    /// A node's namespace, linked to its region's router.
    pub fn add_node(&mut self, name: &str, region: &str) -> NetNode {
        assert!(
            self.nodes.iter().all(|n| n.name != name),
            "two nodes named {name}"
        );
        let index = self.region_index(region);
        let host = 1 + self.nodes.iter().filter(|n| n.region == region).count();
        assert!(
            host < usize::from(ROUTER_HOST),
            "too many nodes in {region}"
        );
        let node = NetNode {
            name: name.into(),
            region: region.into(),
            netns: format!("{}-{name}", self.tag),
            ip: Ipv4Addr::new(10, 77, index as u8, host as u8),
        };
        self.add_namespace(&node.netns);
        let router = self.router(region);
        let gateway = Ipv4Addr::new(10, 77, index as u8, ROUTER_HOST);
        link(
            (&router, &format!("n{host}"), gateway),
            (&node.netns, "eth0", node.ip),
        );
        must_ip(&[
            "-n",
            &node.netns,
            "route",
            "add",
            NETWORK_PREFIX,
            "via",
            &gateway.to_string(),
            "dev",
            "eth0",
        ]);
        self.nodes.push(node.clone());
        node
    }

    pub fn node(&self, name: &str) -> &NetNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the network"))
    }

    fn prefix(&self, place: &Place) -> String {
        match place {
            Place::Node(name) => format!("{}/32", self.node(name).ip),
            Place::Region(region) => format!("10.77.{}.0/24", self.region_index(region)),
            Place::Everything => NETWORK_PREFIX.into(),
        }
    }

    /// Rules in every region router, both directions; `verb` is `add` or `del`.
    fn rules(&self, verb: &str, a: &Place, b: &Place) -> Result<(), String> {
        let (a, b) = (self.prefix(a), self.prefix(b));
        for region in &self.regions {
            let router = self.router(region);
            for (from, to) in [(&a, &b), (&b, &a)] {
                ip(&[
                    "-n",
                    &router,
                    "rule",
                    verb,
                    "from",
                    from,
                    "to",
                    to,
                    "blackhole",
                ])?;
            }
        }
        Ok(())
    }

    /// Drops every packet between `a` and `b`, both ways, until [`Network::heal`].
    pub fn cut(&mut self, a: Place, b: Place) {
        assert!(
            !self.cuts.contains(&(a.clone(), b.clone())),
            "{a:?} and {b:?} are already cut"
        );
        self.rules("add", &a, &b).unwrap_or_else(|e| panic!("{e}"));
        self.cuts.push((a, b));
    }

    /// Restores what [`Network::cut`] of the same two places cut.
    pub fn heal(&mut self, a: Place, b: Place) {
        let at = self
            .cuts
            .iter()
            .position(|cut| *cut == (a.clone(), b.clone()))
            .unwrap_or_else(|| panic!("{a:?} and {b:?} are not cut"));
        self.rules("del", &a, &b).unwrap_or_else(|e| panic!("{e}"));
        self.cuts.remove(at);
    }

    /// Cuts a node from every other address of the network.
    pub fn isolate(&mut self, node: &str) {
        self.cut(Place::Node(node.into()), Place::Everything);
    }

    /// Heals what [`Network::isolate`] cut.
    pub fn rejoin(&mut self, node: &str) {
        self.heal(Place::Node(node.into()), Place::Everything);
    }
}

/// A veth pair between two namespaces, each end with one /32 address and a route to the other.
fn link(a: (&str, &str, Ipv4Addr), b: (&str, &str, Ipv4Addr)) {
    let ((a_ns, a_dev, a_ip), (b_ns, b_dev, b_ip)) = (a, b);
    must_ip(&[
        "-n", a_ns, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b_ns,
    ]);
    for (netns, dev, own, peer) in [(a_ns, a_dev, a_ip, b_ip), (b_ns, b_dev, b_ip, a_ip)] {
        must_ip(&["-n", netns, "addr", "add", &format!("{own}/32"), "dev", dev]);
        must_ip(&["-n", netns, "link", "set", dev, "up"]);
        must_ip(&[
            "-n",
            netns,
            "route",
            "add",
            &format!("{peer}/32"),
            "dev",
            dev,
        ]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let mut namespaces: Vec<String> = self.nodes.iter().map(|n| n.netns.clone()).collect();
        namespaces.extend(self.regions.iter().map(|r| self.router(r)));
        namespaces.push(self.backbone());
        remove_namespaces(&namespaces);
    }
}
