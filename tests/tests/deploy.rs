//! The deployment's boot path, for real. The provider-free topology module
//! (`terraform/modules/topology`) is applied with a three-region table, and the user-data it
//! renders — what the cloud modules hand to every instance — runs on this machine: one network
//! namespace per instance (three regions × (origin + two edges) + two DNS servers), joined by
//! veth links to a bridge, each with a private view of `/etc`, `/opt`, `/var` and `/run`
//! (overlays in its own mount namespace), so the scripts run unchanged as root, create their
//! users and install the release tarball that `scripts/package-release.sh` packs, units and
//! scripts included. The cloud's parts are stood in for by `tests/deploy/`: `systemctl` (starts
//! the units as their files say), `aws` (a secret store shared by the instances) and `imds.py`
//! (instance metadata, for the scale-in hook).
//!
//! It checks that the instances form one cluster through `skein init` / `skein join` with the
//! token the origins put in the secret store, that every region publishes its coordinates,
//! that both DNS servers answer each region's clients with that region's edges, and that an
//! edge the autoscaling group scales in leaves the cluster and completes the lifecycle action.
//!
//! Needs root, `ip`, `unshare`, `setpriv` and Terraform (or OpenTofu); the test-deps script
//! installs what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skein_tests::{Process, binary};

const ZONE: &str = "live.example.test";
const SECRET_ID: &str = "arn:aws:secretsmanager:test-1:000000000000:secret:skein-join";
/// Client networks (carried in ECS options; no traffic goes there) and their regions.
const CLIENTS: [(&str, &str); 3] = [
    ("a", "198.51.100.0/24"),
    ("b", "203.0.113.0/24"),
    ("c", "192.0.2.0/24"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `program args`, panics with its output unless it succeeds, returns stdout.
fn run(program: &str, args: &[&str]) -> String {
    run_env(program, args, &[])
}

fn run_env(program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Terraform, or OpenTofu where only that is installed.
fn terraform() -> &'static str {
    for tool in ["terraform", "tofu"] {
        if Command::new(tool).arg("version").output().is_ok() {
            return tool;
        }
    }
    panic!("neither terraform nor tofu is installed: run scripts/install-test-deps.sh");
}

/// One instance: its network namespace and the process that holds its mount namespace.
struct Instance {
    name: String,
    netns: String,
    ip: String,
    dir: PathBuf,
    init: Option<Process>,
}

impl Instance {
    /// A file as the instance sees it under one of its overlaid directories.
    fn file(&self, under: &str, path: &str) -> PathBuf {
        self.dir.join(format!("{under}-upper")).join(path)
    }

    fn log(&self, unit: &str) -> String {
        std::fs::read_to_string(self.file("var", &format!("log/units/{unit}.log")))
            .unwrap_or_default()
    }
}

/// The namespaces, links and processes of the test; all of it is removed on drop.
struct Testbed {
    tag: String,
    dir: PathBuf,
    bridge_ns: String,
    client_ns: String,
    instances: Vec<Instance>,
    extra: Vec<Process>,
    links: usize,
}

impl Testbed {
    fn new(dir: PathBuf) -> Self {
        let tag = format!("skd{}", std::process::id() % 100_000);
        let bed = Testbed {
            bridge_ns: format!("{tag}-bridge"),
            client_ns: format!("{tag}-client"),
            tag,
            dir,
            instances: Vec::new(),
            extra: Vec::new(),
            links: 0,
        };
        run("ip", &["netns", "add", &bed.bridge_ns]);
        run(
            "ip",
            &["-n", &bed.bridge_ns, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &bed.bridge_ns, "link", "set", "br0", "up"]);
        bed
    }

    /// A namespace with one address on a link to the bridge. All regions' networks are in
    /// 10.0.0.0/8 and on one segment, standing in for the peered VPCs.
    fn add_namespace(&mut self, netns: &str, ip: &str) {
        run("ip", &["netns", "add", netns]);
        self.links += 1;
        let outer = format!("{}v{}", self.tag, self.links);
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "add",
                &outer,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                netns,
            ],
        );
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                &outer,
                "master",
                "br0",
                "up",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                netns,
                "addr",
                "add",
                &format!("{ip}/8"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", netns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", netns, "link", "set", "lo", "up"]);
    }

    fn add_instance(&mut self, name: &str, ip: &str) -> &mut Instance {
        let netns = format!("{}-{name}", self.tag);
        self.add_namespace(&netns, ip);
        let dir = self.dir.join("instances").join(name);
        for under in ["etc", "opt", "var", "run"] {
            std::fs::create_dir_all(dir.join(format!("{under}-upper"))).unwrap();
            std::fs::create_dir_all(dir.join(format!("{under}-work"))).unwrap();
        }
        self.instances.push(Instance {
            name: name.into(),
            netns,
            ip: ip.into(),
            dir,
            init: None,
        });
        self.instances.last_mut().unwrap()
    }

    fn instance(&self, name: &str) -> &Instance {
        self.instances.iter().find(|i| i.name == name).unwrap()
    }

    /// Boots an instance: runs its user-data as root in its namespaces, with the stand-ins
    /// first on PATH, then keeps the namespaces alive.
    fn boot(&mut self, name: &str, user_data: &str, shims: &Path) {
        let instance = self.instances.iter_mut().find(|i| i.name == name).unwrap();
        let script = instance.dir.join("user-data.sh");
        std::fs::write(&script, user_data).unwrap();
        let d = instance.dir.display();
        let overlays: String = ["etc", "opt", "var", "run"]
            .iter()
            .map(|u| {
                format!(
                    "mount -t overlay overlay -o lowerdir=/{u},upperdir={d}/{u}-upper,workdir={d}/{u}-work /{u} && "
                )
            })
            .collect();
        let prelude = format!(
            "{overlays} export PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; \
             bash {} > {d}/boot.log 2>&1; echo $? > {d}/boot.rc; exec sleep 3600",
            shims.display(),
            script.display()
        );
        let process = Process::spawn(
            Command::new("ip")
                .args(["netns", "exec", &instance.netns])
                .args([
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "bash",
                    "-c",
                ])
                .arg(prelude)
                .stdin(Stdio::null()),
        );
        instance.init = Some(process);
    }

    /// Runs a command inside a namespace; its stdout, or `None` when it fails.
    fn exec(&self, netns: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cluster(&self, origin_ip: &str) -> Option<Value> {
        let body = self.exec(
            &self.client_ns,
            &[
                "curl",
                "-fsS",
                "--max-time",
                "3",
                &format!("http://{origin_ip}:8080/api/v1/cluster"),
            ],
        )?;
        serde_json::from_str(&body).ok()
    }

    fn dig(&self, server: &str, args: &[&str]) -> Option<String> {
        let mut all = vec!["dig", "+time=2", "+tries=1"];
        let at = format!("@{server}");
        all.push(&at);
        all.extend_from_slice(args);
        self.exec(&self.client_ns, &all)
    }

    /// What went on, for a failure message: every instance's boot log and units' logs.
    fn report(&self) -> String {
        let mut out = String::new();
        for i in &self.instances {
            let boot = std::fs::read_to_string(i.dir.join("boot.log")).unwrap_or_default();
            out.push_str(&format!(
                "==== {} ({}) boot:\n{}\n",
                i.name,
                i.ip,
                tail(&boot, 15)
            ));
            for unit in [
                "skein.service",
                "skein-dns.service",
                "skein-token-refresh.service",
            ] {
                let log = i.log(unit);
                if !log.is_empty() {
                    out.push_str(&format!("---- {unit}:\n{}\n", tail(&log, 15)));
                }
            }
        }
        out
    }

    fn wait<T>(&self, what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let mut namespaces: Vec<String> = self.instances.iter().map(|i| i.netns.clone()).collect();
        namespaces.push(self.client_ns.clone());
        namespaces.push(self.bridge_ns.clone());
        // Every process of an instance (services, supervisors) lives in its namespace.
        skein_tests::netns::remove_namespaces(&namespaces);
        self.extra.clear();
        for i in &mut self.instances {
            i.init.take();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Packs the release from the binaries under test; returns (tarball, sha256).
fn package_release(dir: &Path) -> (PathBuf, String) {
    let bin_dir = binary("skein").parent().unwrap().to_path_buf();
    let out = run(
        repo().join("scripts/package-release.sh").to_str().unwrap(),
        &[
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--strip",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    let mut lines = out.lines();
    let tarball = PathBuf::from(lines.next().unwrap());
    let sha = lines
        .next()
        .unwrap()
        .trim_start_matches("sha256 ")
        .to_string();
    (tarball, sha)
}

/// Applies the topology module with the test's region table; returns its outputs.
fn render_topology(dir: &Path, release_url: &str, sha256: &str) -> Value {
    let tf = terraform();
    let module = repo().join("terraform/modules/topology");
    let edges = json!({ "min": 2, "desired": 2, "max": 4 });
    let region = |cloud: &str, lat: f64, lon: f64, cidr: &str, client: &str| {
        json!({ "cloud_region": cloud, "lat": lat, "lon": lon, "cidr": cidr, "origins": 1,
                "edges": edges, "client_subnets": [client] })
    };
    let vars = json!({
        "zone": ZONE,
        "regions": {
            "a": region("test-a", 50.11, 8.68, "10.61.0.0/16", CLIENTS[0].1),
            "b": region("test-b", 38.95, -77.45, "10.62.0.0/16", CLIENTS[1].1),
            "c": region("test-c", 1.35, 103.82, "10.63.0.0/16", CLIENTS[2].1),
        },
        "dns_servers": [{ "name": "ns1", "region": "a" }, { "name": "ns2", "region": "b" }],
        "release": { "url": release_url, "sha256": sha256 },
        "join_secret": { "id": SECRET_ID, "cloud_region": "test-a" },
    });
    let var_file = dir.join("test.tfvars.json");
    std::fs::write(&var_file, vars.to_string()).unwrap();
    let state = dir.join("topology.tfstate");
    let data_dir = dir.join("tf-data");
    let env = [("TF_DATA_DIR", data_dir.as_path())];
    let chdir = format!("-chdir={}", module.display());
    run_env(tf, &[&chdir, "init", "-input=false", "-no-color"], &env);
    let state_arg = format!("-state={}", state.display());
    let var_arg = format!("-var-file={}", var_file.display());
    run_env(
        tf,
        &[
            &chdir,
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            &state_arg,
            &var_arg,
        ],
        &env,
    );
    let out = run_env(tf, &[&chdir, "output", "-json", &state_arg], &env);
    serde_json::from_str(&out).expect("terraform output -json")
}

fn output<'a>(outputs: &'a Value, name: &str) -> &'a Value {
    &outputs[name]["value"]
}

fn edge_ip(outputs: &Value, region: &str, i: usize) -> String {
    // Edges of an autoscaling group get addresses from the region's subnets; the test picks
    // them from the first subnet, above the fixed ones.
    let subnet = output(outputs, "regions")[region]["subnets"][0]
        .as_str()
        .unwrap();
    let base: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(base) + 100 + i as u32).to_string()
}

#[test]
fn rendered_user_data_boots_a_three_region_cluster_with_two_dns_servers() {
    assert!(
        // SAFETY: geteuid(2) only reads the process credentials.
        unsafe { libc::geteuid() } == 0,
        "the deployment test creates network namespaces and mounts: run it as root"
    );
    let dir = skein_tests::dns::temp_dir("deploy");
    let (tarball, sha256) = package_release(&dir);
    let outputs = render_topology(&dir, &format!("file://{}", tarball.display()), &sha256);

    // The rendered user-data is sound shell before it runs anywhere.
    let mut scripts: Vec<String> = Vec::new();
    for list in ["origins", "dns_servers"] {
        for entry in output(&outputs, list).as_array().unwrap() {
            scripts.push(entry["user_data"].as_str().unwrap().into());
        }
    }
    for user_data in output(&outputs, "edge_user_data")
        .as_object()
        .unwrap()
        .values()
    {
        scripts.push(user_data.as_str().unwrap().into());
    }
    for (i, script) in scripts.iter().enumerate() {
        let path = dir.join(format!("rendered-{i}.sh"));
        std::fs::write(&path, script).unwrap();
        run("shellcheck", &[path.to_str().unwrap()]);
    }

    // The stand-ins, with the shared secret store (writable by every instance's service user).
    let shims = dir.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    for shim in ["systemctl", "aws"] {
        std::fs::copy(
            repo().join("tests/deploy/shims").join(shim),
            shims.join(shim),
        )
        .unwrap();
    }
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    run("chmod", &["1777", secrets.to_str().unwrap()]);
    std::fs::write(shims.join("secrets-dir"), secrets.to_str().unwrap()).unwrap();

    let mut bed = Testbed::new(dir.clone());
    let client_ns = bed.client_ns.clone();
    bed.add_namespace(&client_ns, "10.60.0.2");

    let origins = output(&outputs, "origins").as_array().unwrap().clone();
    let dns_servers = output(&outputs, "dns_servers").as_array().unwrap().clone();
    let mut edges_by_region: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &origins {
        bed.add_instance(
            o["name"].as_str().unwrap(),
            o["private_ip"].as_str().unwrap(),
        );
    }
    for region in ["a", "b", "c"] {
        for i in 0..2 {
            let ip = edge_ip(&outputs, region, i);
            bed.add_instance(&format!("{region}-edge-{i}"), &ip);
            edges_by_region.entry(region.into()).or_default().push(ip);
        }
    }
    for s in &dns_servers {
        bed.add_instance(
            s["name"].as_str().unwrap(),
            s["private_ip"].as_str().unwrap(),
        );
    }

    // The scale-in hook's instance metadata, on one edge: in service until the test says.
    let leaving = "c-edge-1";
    let lifecycle_state = dir.join("lifecycle-state");
    std::fs::write(&lifecycle_state, "InService").unwrap();
    let leaving_ns = bed.instance(leaving).netns.clone();
    run(
        "ip",
        &[
            "-n",
            &leaving_ns,
            "addr",
            "add",
            "169.254.169.254/32",
            "dev",
            "lo",
        ],
    );
    let imds = Process::spawn(
        Command::new("ip")
            .args(["netns", "exec", &leaving_ns, "python3"])
            .arg(repo().join("tests/deploy/imds.py"))
            .args(["169.254.169.254", "80", "i-0leavingedge"])
            .arg(&lifecycle_state),
    );
    bed.extra.push(imds);

    // Boot: every instance at once, as an autoscaling deployment does; joiners wait for the
    // join document that the bootstrap origin's token refresh puts into the secret store.
    for o in &origins {
        bed.boot(
            o["name"].as_str().unwrap(),
            o["user_data"].as_str().unwrap(),
            &shims,
        );
    }
    for region in edges_by_region.keys() {
        let user_data = output(&outputs, "edge_user_data")[region]
            .as_str()
            .unwrap()
            .to_string();
        for i in 0..2 {
            bed.boot(&format!("{region}-edge-{i}"), &user_data, &shims);
        }
    }
    for s in &dns_servers {
        bed.boot(
            s["name"].as_str().unwrap(),
            s["user_data"].as_str().unwrap(),
            &shims,
        );
    }

    // One cluster: 3 origins + 6 edges, all up, every region with its coordinates.
    let bootstrap_ip = origins[0]["private_ip"].as_str().unwrap().to_string();
    let cluster = bed.wait(
        "all nine nodes to join and be up",
        Duration::from_secs(240),
        || {
            let doc = bed.cluster(&bootstrap_ip)?;
            let nodes = doc["nodes"].as_array()?;
            let up = nodes
                .iter()
                .filter(|n| n["health"].as_str() == Some("up"))
                .count();
            let located = doc["regions"]
                .as_array()?
                .iter()
                .filter(|r| r["lat"].is_number())
                .count();
            (nodes.len() == 9 && up == 9 && located == 3).then_some(doc)
        },
    );
    for i in &bed.instances {
        let rc = std::fs::read_to_string(i.dir.join("boot.rc")).unwrap_or_default();
        assert_eq!(
            rc.trim(),
            "0",
            "{}'s user-data failed\n{}",
            i.name,
            bed.report()
        );
    }
    let nodes = cluster["nodes"].as_array().unwrap();
    let origin_nodes: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n["roles"]["origin"] == true)
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        origin_nodes,
        BTreeSet::from(["a-origin-1", "b-origin-1", "c-origin-1"]),
        "the origins are the origin instances, by their rendered names"
    );
    for (region, ips) in &edges_by_region {
        for ip in ips {
            let name = format!("{region}-edge-{}", ip.replace('.', "-"));
            let node = nodes
                .iter()
                .find(|n| n["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} is not in the cluster: {cluster:#}"));
            assert_eq!(node["region"], region.as_str());
            assert_eq!(node["public_addr"]["rtmp"], format!("{ip}:1935").as_str());
        }
    }
    // The installed units are valid systemd units (their directives, users and executables),
    // checked by systemd itself inside an instance's mount namespace.
    for (instance, units) in [
        (
            "a-origin-1",
            &[
                "skein.service",
                "skein-token-refresh.service",
                "skein-token-refresh.timer",
                "skein-lifecycle.service",
            ][..],
        ),
        ("ns1", &["skein-dns.service"][..]),
    ] {
        let pid = bed
            .instance(instance)
            .init
            .as_ref()
            .unwrap()
            .0
            .id()
            .to_string();
        let mut args = vec!["-t", &pid, "-m", "systemd-analyze", "verify", "--man=no"];
        let paths: Vec<String> = units
            .iter()
            .map(|u| format!("/etc/systemd/system/{u}"))
            .collect();
        args.extend(paths.iter().map(String::as_str));
        let out = Command::new("nsenter").args(&args).output().unwrap();
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && complaints.trim().is_empty(),
            "systemd-analyze verify on {instance}: {complaints}"
        );
    }
    // The service users exist only inside the instances, and own their state.
    let a_origin = bed.instance("a-origin-1");
    let passwd = std::fs::read_to_string(a_origin.file("etc", "passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("skein:")), "{passwd}");
    let secret = std::fs::read_to_string(secrets.join(SECRET_ID.replace([':', '/'], "_"))).unwrap();
    let document: Value = serde_json::from_str(&secret).unwrap();
    assert!(document["ca_hash"].as_str().unwrap().starts_with("sha256:"));
    // Nothing secret was rendered: the join token appears in no user-data.
    let token = document["token"].as_str().unwrap();
    assert!(!outputs.to_string().contains(token));

    // Both DNS servers answer each region's clients with that region's edges.
    for s in &dns_servers {
        let server = s["private_ip"].as_str().unwrap();
        for (region, subnet) in CLIENTS {
            let wanted: BTreeSet<IpAddr> = edges_by_region[region]
                .iter()
                .map(|ip| ip.parse().unwrap())
                .collect();
            let ecs = format!("+subnet={subnet}");
            let got = bed.wait(
                &format!(
                    "{} to answer region {region}'s clients with its edges",
                    s["name"]
                ),
                Duration::from_secs(60),
                || {
                    let out = bed.dig(server, &[ZONE, "A", "+short", "+norecurse", &ecs])?;
                    let addrs: BTreeSet<IpAddr> =
                        out.lines().filter_map(|l| l.trim().parse().ok()).collect();
                    (!addrs.is_empty() && addrs.is_subset(&wanted)).then_some(addrs)
                },
            );
            assert!(got.is_subset(&wanted));
        }
        // The delegation's NS records, with the glue, from both.
        let ns = bed.dig(server, &[ZONE, "NS", "+norecurse"]).unwrap();
        for other in &dns_servers {
            let fqdn = format!("{}.{ZONE}.", other["name"].as_str().unwrap());
            assert!(ns.contains(&fqdn), "{ns}");
            assert!(
                ns.contains(other["private_ip"].as_str().unwrap()),
                "glue: {ns}"
            );
        }
    }

    // Scale-in: the group marks the edge Terminated; skein-lifecycle makes it leave the
    // cluster and completes the lifecycle action.
    std::fs::write(&lifecycle_state, "Terminated").unwrap();
    let leaving_ip = bed.instance(leaving).ip.clone();
    let leaving_name = format!("c-edge-{}", leaving_ip.replace('.', "-"));
    bed.wait(
        "the scaled-in edge to leave the cluster",
        Duration::from_secs(60),
        || {
            let doc = bed.cluster(&bootstrap_ip)?;
            let still = doc["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["name"] == leaving_name.as_str());
            (!still).then_some(())
        },
    );
    let actions = bed.wait("the lifecycle action", Duration::from_secs(30), || {
        std::fs::read_to_string(secrets.join("lifecycle-actions")).ok()
    });
    let action: Value = serde_json::from_str(actions.lines().next().unwrap()).unwrap();
    assert_eq!(action["--auto-scaling-group-name"], "skein-c-edges");
    assert_eq!(action["--lifecycle-hook-name"], "skein-drain");
    assert_eq!(action["--instance-id"], "i-0leavingedge");
    assert_eq!(action["--lifecycle-action-result"], "CONTINUE");
}
