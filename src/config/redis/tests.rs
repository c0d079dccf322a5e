//! `[redis]`: one mode at a time, URLs checked, the sentinel master named,
//! secrets never printed, the deploy example loading.

use std::path::Path;

use crate::config::{parse_raw, Config, ConfigError};

fn parse(redis: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let text = format!("[tokens]\nsalt = \"s\"\n[redis]\n{redis}");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    parse_raw(&text, Path::new("test.toml"), env)?.compile()
}

fn err(redis: &str) -> String {
    parse(redis, &[]).expect_err("rejected").to_string()
}

#[test]
fn one_mode_at_a_time() {
    let e = err("url = \"redis://a\"\ncluster = [\"redis://b:7000\"]\n");
    assert!(e.contains("`redis.url` and `redis.cluster`"), "{e}");
    let e =
        err("cluster = [\"redis://b:7000\"]\nsentinels = [\"c:26379\"]\nsentinel_master = \"m\"\n");
    assert!(e.contains("`redis.cluster` and `redis.sentinels`"), "{e}");
    // Empty values (an environment override that turns a mode off) are unset.
    assert!(parse("url = \"\"\ncluster = [\"redis://b:7000\"]\n", &[]).is_ok());
    assert!(parse("", &[]).unwrap().redis.is_none());
    let e = err("sentinel_master = \"m\"\n");
    assert!(
        e.contains("redis.sentinel_master") && e.contains("only used with"),
        "{e}"
    );
    let e = err("sentinels = [\"c:26379\"]\n");
    assert!(
        e.contains("redis.sentinel_master") && e.contains("required"),
        "{e}"
    );
}

#[test]
fn urls_are_checked() {
    for (redis, needle) in [
        ("url = \"http://a\"\n", "must start with"),
        (
            "url = \"rediss://a/#insecure\"\n",
            "certificates are always checked",
        ),
        (
            "cluster = [\"unix:///tmp/r.sock\"]\n",
            "must start with redis:// or rediss://",
        ),
        (
            "cluster = [\"redis://a:1\", \"rediss://b:2\"]\n",
            "one scheme",
        ),
        (
            "sentinels = [\"redis://c:26379\"]\nsentinel_master = \"m\"\n",
            "sentinel_password",
        ),
        (
            "sentinels = [\"c\"]\nsentinel_master = \"m\"\n",
            "not host:port",
        ),
        (
            "url = \"redis://a\"\nca_file = \"/nonexistent\"\n",
            "no connection uses TLS",
        ),
        (
            "url = \"rediss://a\"\nca_file = \"/nonexistent\"\n",
            "cannot read",
        ),
    ] {
        let e = err(redis);
        assert!(e.contains(needle), "{redis}: {e}");
    }
}

#[test]
fn sentinel_master_names_the_master_and_carries_the_data_nodes_credentials() {
    let c = parse(
        "sentinels = [\"10.0.0.1:26379\", \"[fd00::2]:26380\"]\nsentinel_master = \"rediss://app:p%40ss@mymaster/2\"\nsentinel_password = \"12345\"\nsentinel_tls = true\n",
        &[("AUTHGATE_REDIS_SENTINEL_PASSWORD", "67890")],
    )
    .unwrap();
    let r = c.redis.unwrap();
    assert!(r.uses_tls());
    let super::RedisMode::Sentinel(s) = r.mode else {
        panic!("sentinel mode")
    };
    assert_eq!(
        s.sentinels,
        [
            ("10.0.0.1".to_owned(), 26379),
            ("fd00::2".to_owned(), 26380)
        ]
    );
    assert_eq!(s.master, "mymaster");
    assert_eq!(
        s.password.unwrap().expose(),
        "67890",
        "the environment wins"
    );
    let plain = parse(
        "sentinels = [\"s:1\"]\nsentinel_master = \"mymaster\"\n",
        &[],
    )
    .unwrap();
    let super::RedisMode::Sentinel(s) = plain.redis.unwrap().mode else {
        panic!("sentinel mode")
    };
    assert_eq!(
        (s.master.as_str(), s.master_url.expose()),
        ("mymaster", "redis://mymaster")
    );
    let tls = parse(
        "sentinels = [\"s:1\"]\nsentinel_master = \"mymaster\"\nsentinel_tls = true\n",
        &[],
    )
    .unwrap();
    let super::RedisMode::Sentinel(s) = tls.redis.unwrap().mode else {
        panic!("sentinel mode")
    };
    assert_eq!(
        s.master_url.expose(),
        "rediss://mymaster",
        "a bare name follows sentinel_tls"
    );
}

#[test]
fn the_deploy_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/redis-cluster-tls.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let body = text.split_once("[redis]\n").unwrap().1;
    let c = parse(body, &[]).unwrap().redis.unwrap();
    assert!(matches!(c.mode, super::RedisMode::Cluster(_)) && c.uses_tls());
}

#[test]
fn secrets_never_print() {
    let c = parse(
        "cluster = [\"rediss://:clusterpw@a:7000\"]\n",
        &[("AUTHGATE_REDIS_CLUSTER", "[\"rediss://:envpw@b:7000\"]")],
    )
    .unwrap();
    let text = format!("{c:?}{}", c.to_redacted_toml());
    assert!(text.contains("b:7000") && !text.contains("envpw"), "{text}");
    let c = parse(
        "sentinels = [\"s:1\"]\nsentinel_master = \"redis://:datapw@m\"\nsentinel_password = \"sentpw\"\n",
        &[],
    )
    .unwrap();
    let text = format!("{c:?}{}", c.to_redacted_toml());
    assert!(
        !text.contains("datapw") && !text.contains("sentpw"),
        "{text}"
    );
}
