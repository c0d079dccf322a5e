//! Real Redis topologies for the tests, on loopback and free ports, each
//! process killed when its value is dropped (pass or fail): a server over
//! TLS with a CA made here ([`Pki`]), a Redis Cluster of three masters with
//! a replica each ([`Cluster`]), and one master, one replica and three
//! sentinels ([`SentinelSet`]). Failovers are real: a master is killed
//! (SIGKILL) and Redis promotes its replica; the tests measure how long
//! authgate takes to follow.
//!
//! Timings are set short so a failover takes seconds, not the production
//! defaults' tens of seconds: `cluster-node-timeout 1000`,
//! `down-after-milliseconds 1000`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA, a server certificate it signed (for `127.0.0.1` and `localhost`),
/// and an unrelated second CA, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_ca: PathBuf,
}

fn new_ca() -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "authgate test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, rcgen::Issuer::new(params, key))
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let (ca, issuer) = new_ca();
        let (other, _) = new_ca();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            // The cluster bus and replication connect with the same pair.
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            other_ca: dir.join("other-ca.pem"),
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        std::fs::write(&pki.other_ca, other.pem()).unwrap();
        pki
    }

    /// The server-side TLS settings of a node on `port` (no plain port).
    fn server_conf(&self, port: u16) -> String {
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }
}

/// One redis-server (or sentinel) process.
pub struct Node {
    pub port: u16,
    pub tls: bool,
    pub password: Option<String>,
    conf: PathBuf,
    sentinel: bool,
    child: Option<Child>,
}

impl Node {
    /// Write `conf` (plus the common lines) to `dir` and start the process.
    fn start(dir: &Path, port: u16, conf: &str, tls: bool, sentinel: bool) -> Node {
        let path = dir.join(format!("{port}.conf"));
        let log = dir.join(format!("{port}.log"));
        std::fs::write(
            &path,
            format!(
                "bind 127.0.0.1\ndir {}\nlogfile {}\nsave \"\"\nappendonly no\n{conf}",
                dir.display(),
                log.display()
            ),
        )
        .unwrap();
        let password = conf
            .lines()
            .find_map(|l| l.strip_prefix("requirepass "))
            .map(str::to_owned);
        let mut node = Node {
            port,
            tls,
            password,
            conf: path,
            sentinel,
            child: None,
        };
        node.restart();
        node
    }

    /// Start (again) with the same config file.
    pub fn restart(&mut self) {
        let mut cmd = if self.sentinel {
            let mut c = Command::new("redis-sentinel");
            c.arg(&self.conf);
            c
        } else {
            let mut c = Command::new("redis-server");
            c.arg(&self.conf);
            c
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server and redis-sentinel must be installed (scripts/test.sh installs them)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run `redis-cli` against this node; its trimmed output.
    pub fn cli(&self, ca: Option<&Path>, args: &[&str]) -> String {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let (true, Some(ca)) = (self.tls, ca) {
            c.arg("--tls").arg("--cacert").arg(ca);
        }
        if let Some(p) = &self.password {
            c.args(["-a", p, "--no-auth-warning"]);
        }
        let out = c.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// How many clients this node counts as subscribed to `channel`
    /// (`sharded`: with `SSUBSCRIBE`).
    pub fn subscribers(&self, ca: Option<&Path>, channel: &str, sharded: bool) -> usize {
        let which = if sharded { "SHARDNUMSUB" } else { "NUMSUB" };
        self.cli(ca, &["PUBSUB", which, channel])
            .lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `INFO <section>`'s `field`.
    pub fn info(&self, ca: Option<&Path>, section: &str, field: &str) -> Option<String> {
        self.cli(ca, &["INFO", section])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait for `what` at most `limit`, polling every 20 ms.
pub fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "authgate-{name}-{}-{}",
            std::process::id(),
            hex::encode(r)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One redis-server over TLS only.
pub struct TlsRedis {
    pub node: Node,
    pub pki: Pki,
    // Last: the directory outlives the process.
    _dir: TempDir,
}

impl TlsRedis {
    pub fn start() -> TlsRedis {
        let dir = TempDir::new("redis-tls");
        let pki = Pki::new(&dir.0);
        let port = free_port();
        let node = Node::start(&dir.0, port, &pki.server_conf(port), true, false);
        TlsRedis {
            node,
            pki,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.node.port)
    }
}

/// Three masters with one replica each, over TLS (bus and replication
/// too), as a managed cluster-mode Redis is.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub pki: Pki,
    _dir: TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = TempDir::new("redis-cluster");
        let pki = Pki::new(&dir.0);
        let nodes: Vec<Node> = (0..6)
            .map(|_| {
                let port = free_port();
                let conf = format!(
                    "{}tls-cluster yes\ncluster-enabled yes\ncluster-config-file nodes-{port}.conf\ncluster-port {}\ncluster-node-timeout 1000\ncluster-replica-validity-factor 0\n",
                    pki.server_conf(port),
                    free_port()
                );
                Node::start(&dir.0, port, &conf, true, false)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--tls")
            .arg("--cacert")
            .arg(&pki.ca)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster {
            nodes,
            pki,
            _dir: dir,
        };
        wait_for(Duration::from_secs(20), "a healthy cluster", || {
            cluster.nodes.iter().all(|n| {
                n.info(Some(&cluster.pki.ca), "cluster", "cluster_enabled")
                    .is_some()
                    && n.cli(Some(&cluster.pki.ca), &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                    && (n
                        .info(Some(&cluster.pki.ca), "replication", "role")
                        .as_deref()
                        == Some("master")
                        || n.info(Some(&cluster.pki.ca), "replication", "master_link_status")
                            .as_deref()
                            == Some("up"))
            })
        });
        cluster
    }

    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("rediss://127.0.0.1:{}", n.port))
            .collect()
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    fn alive(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// The port of the master serving `key`'s slot, as a live node sees it.
    pub fn master_of(&self, key: &str) -> u16 {
        let ca = Some(self.pki.ca.as_path());
        let any = self.alive().next().unwrap();
        let slot: u16 = any.cli(ca, &["CLUSTER", "KEYSLOT", key]).parse().unwrap();
        self.master_of_slot(slot).unwrap()
    }

    /// The master serving `slot` according to a live node's `CLUSTER
    /// NODES`, unless that node thinks it failed.
    pub fn master_of_slot(&self, slot: u16) -> Option<u16> {
        let ca = Some(self.pki.ca.as_path());
        let any = self.alive().next().unwrap();
        let nodes = any.cli(ca, &["CLUSTER", "NODES"]);
        nodes.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, flags) = (f.get(1)?, f.get(2)?);
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            let serves = f[8..].iter().any(|r| match r.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= slot)
                        && b.parse::<u16>().is_ok_and(|b| slot <= b)
                }
                None => r.parse::<u16>() == Ok(slot),
            });
            serves.then(|| addr.split(['@', ':']).nth(1)?.parse().ok())?
        })
    }

    /// The port of the replica of the master on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let ca = Some(self.pki.ca.as_path());
        let nodes = self.alive().next().unwrap().cli(ca, &["CLUSTER", "NODES"]);
        let id_of = |p: u16| {
            nodes.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1)?
                    .starts_with(&format!("127.0.0.1:{p}@"))
                    .then(|| f[0].to_owned())
            })
        };
        let master = id_of(port).unwrap();
        nodes
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(3) == Some(&master.as_str()))
                    .then(|| f[1].split(['@', ':']).nth(1)?.parse().ok())?
            })
            .unwrap()
    }

    /// Subscribers (sharded) to `channel` on the node on `port`.
    pub fn subscribers(&self, port: u16, channel: &str) -> usize {
        self.node(port)
            .subscribers(Some(&self.pki.ca), channel, true)
    }

    /// The slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        let any = self.alive().next().unwrap();
        any.cli(Some(&self.pki.ca), &["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap()
    }

    /// Kill the master on `port`.
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap()
            .kill();
    }

    /// Whether `port` is a live master now (by its own account).
    pub fn is_master(&self, port: u16) -> bool {
        self.node(port)
            .info(Some(&self.pki.ca), "replication", "role")
            .as_deref()
            == Some("master")
    }
}

/// One master and one replica (both with a password), watched by three
/// sentinels (with a password of their own); all over TLS.
pub struct SentinelSet {
    pub master: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
    pub pki: Pki,
    _dir: TempDir,
}

pub const SENTINEL_MASTER: &str = "mymaster";
pub const DATA_PASSWORD: &str = "data-secret";
pub const SENTINEL_PASSWORD: &str = "sentinel-secret";

impl SentinelSet {
    pub fn start() -> SentinelSet {
        let dir = TempDir::new("redis-sentinel");
        let pki = Pki::new(&dir.0);
        let auth = format!("requirepass {DATA_PASSWORD}\nmasterauth {DATA_PASSWORD}\n");
        let mp = free_port();
        let master = Node::start(
            &dir.0,
            mp,
            &format!("{}{auth}", pki.server_conf(mp)),
            true,
            false,
        );
        let rp = free_port();
        let replica = Node::start(
            &dir.0,
            rp,
            &format!("{}{auth}replicaof 127.0.0.1 {mp}\n", pki.server_conf(rp)),
            true,
            false,
        );
        let ca = Some(pki.ca.as_path());
        wait_for(Duration::from_secs(10), "the replica in sync", || {
            replica
                .info(ca, "replication", "master_link_status")
                .as_deref()
                == Some("up")
        });
        let sentinels: Vec<Node> = (0..3)
            .map(|_| {
                let port = free_port();
                let conf = format!(
                    "{}requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {mp} 2\nsentinel auth-pass {SENTINEL_MASTER} {DATA_PASSWORD}\nsentinel down-after-milliseconds {SENTINEL_MASTER} 1000\nsentinel failover-timeout {SENTINEL_MASTER} 10000\nsentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    pki.server_conf(port)
                );
                Node::start(&dir.0, port, &conf, true, true)
            })
            .collect();
        let set = SentinelSet {
            master,
            replica,
            sentinels,
            pki,
            _dir: dir,
        };
        // Each sentinel knows the replica and the two other sentinels.
        wait_for(
            Duration::from_secs(20),
            "sentinels that see each other",
            || {
                set.sentinels.iter().all(|s| {
                    let m = s.cli(Some(&set.pki.ca), &["SENTINEL", "MASTER", SENTINEL_MASTER]);
                    let field = |name: &str| {
                        let mut lines = m.lines();
                        while let Some(l) = lines.next() {
                            if l == name {
                                return lines.next().map(str::to_owned);
                            }
                        }
                        None
                    };
                    field("num-other-sentinels").as_deref() == Some("2")
                        && field("num-slaves").as_deref() == Some("1")
                })
            },
        );
        set
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The master's port as the first live sentinel names it.
    pub fn named_master(&self) -> Option<u16> {
        let s = self.sentinels.iter().find(|s| s.child.is_some())?;
        let out = s.cli(
            Some(&self.pki.ca),
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }
}
