//! The config as a whole, parsed from text: the shipped files load,
//! defaults, environment overrides, errors that name the key, redaction,
//! and the defaults each layout sets.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    parse_raw(text, Path::new("test.toml"), env)?.compile()
}

fn err(text: &str, env: &[(&str, &str)]) -> String {
    parse(text, env)
        .expect_err("config should be rejected")
        .to_string()
}

const MIN: &str = "[tokens]\nsalt = \"s\"\n";

#[test]
fn the_shipped_config_files_load() {
    for file in ["config.toml", "config.strapi5.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        if !path.exists() && file != "config.toml" {
            continue;
        }
        let raw = load_raw_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{file}: {e}"));
        raw.compile().unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn minimal_config_has_defaults() {
    let c = parse(MIN, &[]).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.cache.ttl, Duration::from_secs(60));
    assert_eq!(c.cache.stale_if_error, Duration::from_secs(30));
    assert_eq!(c.identity.header_prefix, "x-auth-");
    assert!(c.identity.forward_authorization);
    assert_eq!(c.sessions, SessionPolicy::Pass);
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9090")
    );
    assert!(
        !c.routes.admin_actions().is_empty(),
        "built-in admin action table is used"
    );
}

#[test]
fn salt_is_required() {
    let e = err("", &[]);
    assert!(e.contains("tokens.salt") && e.contains("missing"), "{e}");
    assert!(parse("", &[("API_TOKEN_SALT", "x")]).is_ok());
}

#[test]
fn environment_overrides() {
    let c = parse(
        MIN,
        &[
            ("AUTHGATE_SERVER_LISTEN", "0.0.0.0:9999"),
            ("AUTHGATE_CACHE_TTL", "5s"),
            ("AUTHGATE_CACHE_CAPACITY", "42"),
            ("AUTHGATE_RATE_LIMIT_PER_TOKEN", "10"),
            ("AUTHGATE_IDENTITY_FORWARD_AUTHORIZATION", "false"),
            ("AUTHGATE_TOKENS_SALT", "12345"),
            ("ENCRYPTION_KEY", "enc"),
            ("UNRELATED", "x"),
            ("AUTHGATE_SERVICE_HOST", "10.0.0.1"),
            ("AUTHGATE_METRICS_SERVICE_PORT_HTTP", "9090"),
            ("AUTHGATE_PORT", "tcp://10.0.0.1:8080"),
            ("AUTHGATE_PORT_8080_TCP_ADDR", "10.0.0.1"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(c.cache.ttl, Duration::from_secs(5));
    assert_eq!(c.cache.capacity, 42);
    assert_eq!(c.rate_limit.per_token, 10);
    assert!(!c.identity.forward_authorization);
    assert_eq!(c.tokens.salt.expose(), "12345");
    assert_eq!(
        c.tokens.encryption_key.as_ref().map(Secret::expose),
        Some("enc")
    );
    // The authgate name wins over the Strapi name.
    let c = parse(
        "",
        &[
            ("API_TOKEN_SALT", "strapi"),
            ("AUTHGATE_TOKENS_SALT", "ours"),
        ],
    )
    .unwrap();
    assert_eq!(c.tokens.salt.expose(), "ours");
    // Whichever order the environment lists them in.
    let c = parse(
        "",
        &[
            ("AUTHGATE_TOKENS_SALT", "ours"),
            ("API_TOKEN_SALT", "strapi"),
        ],
    )
    .unwrap();
    assert_eq!(c.tokens.salt.expose(), "ours");
    let e = err(MIN, &[("AUTHGATE_NOPE_X", "1")]);
    assert!(e.contains("AUTHGATE_NOPE_X"), "{e}");
}

#[test]
fn errors_name_the_key() {
    let rows: &[(&str, &str)] = &[
        ("[tokens]\nsalt=\"s\"\nbogus = 1\n", "bogus"),
        ("[tokens]\nsalt=\"s\"\n[cache]\nttl = \"5 parsecs\"\n", "cache.ttl"),
        ("[tokens]\nsalt=\"s\"\n[cache]\nttl = 5\n", "cache.ttl"),
        ("[tokens]\nsalt=\"s\"\n[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[tokens]\nsalt=\"s\"\n[server]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n", "server.tls_cert"),
        ("[tokens]\nsalt=\"s\"\n[server]\ntls_cert = \"/etc/hostname\"\n", "server.tls_key"),
        ("[tokens]\nsalt=\"s\"\n[upstream]\nurl = \"ftp://x\"\n", "upstream.url"),
        ("[tokens]\nsalt=\"s\"\n[upstream]\nurl = \"http://x/base\"\n", "upstream.url"),
        ("[tokens]\nsalt=\"s\"\n[postgres]\nschema = \"Robert'); DROP\"\n", "postgres.schema"),
        ("[tokens]\nsalt=\"s\"\n[routes]\nsessions = \"maybe\"\n", "routes.sessions"),
        ("[tokens]\nsalt=\"s\"\n[postgres]\nlayout = \"strapi4\"\n", "postgres.layout"),
        ("[tokens]\nsalt=\"s\"\n[postgres]\npooler = \"session\"\n", "postgres.pooler"),
        ("[tokens]\nsalt=\"s\"\n[[routes.rule]]\nprefix = \"/api/x\"\nauth = \"sometimes\"\n", "routes.rule[0].auth"),
        ("[tokens]\nsalt=\"s\"\n[[content_types]]\nuid = \"api::a.a\"\nkind = \"double\"\n", "content_types[0].kind"),
        ("[tokens]\nsalt=\"s\"\n[[content_types]]\nuid = \"api::a.a\"\n", "routes"),
        ("[tokens]\nsalt=\"s\"\n[[admin_actions]]\nroute = \"GET /a/:x\"\naction = \"a\"\n[[admin_actions]]\nroute = \"GET /a/:y\"\naction = \"b\"\n", "ambiguous"),
        ("[tokens]\nsalt=\"s\"\n[log]\nformat = \"xml\"\n", "log.format"),
        ("[tokens]\nsalt=\"s\"\n[identity]\nheader_prefix = \"x auth\"\n", "identity.header_prefix"),
        ("[tokens]\nsalt=\"s\"\nstats_interval = \"200ms\"\n", "tokens.stats_interval"),
        ("[tokens]\nsalt=\"s\"\n[tracing]\nsample_ratio = 1.5\n", "tracing.sample_ratio"),
        ("[tokens]\nsalt=\"s\"\n[tracing]\notlp_endpoint = \"collector:4318\"\n", "tracing.otlp_endpoint"),
        ("[tokens]\nsalt=\"s\"\n[tracing]\nservice_name = \"\"\n", "tracing.service_name"),
        ("[tokens\nsalt=\"s\"\n", "not valid TOML"),
    ];
    for (text, needle) in rows {
        let e = err(text, &[]);
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    }
}

#[test]
fn secrets_are_redacted() {
    let c = parse(
        "[tokens]\nsalt = \"super-salt\"\nencryption_key = \"enc-key\"\n[identity]\nsigning_key = \"sig-key\"\n[postgres]\nurl = \"postgres://u:hunter2@db/x\"\nlisten_url = \"postgres://u:listenpw@db-direct/x\"\n[redis]\nurl = \"redis://:redispw@r:6379\"\n",
        &[],
    )
    .unwrap();
    let printed = format!("{}\n{:?}", c.to_redacted_toml(), c);
    for secret in [
        "super-salt",
        "enc-key",
        "sig-key",
        "hunter2",
        "listenpw",
        "redispw",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked");
    }
    assert!(printed.contains("postgres://u:<redacted>@db/x"));
    assert!(printed.contains("postgres://u:<redacted>@db-direct/x"));
    // The environment sets it too (the Helm chart's secret), and an empty
    // one is refused, not read as `url`.
    let c = parse(
        MIN,
        &[("AUTHGATE_POSTGRES_LISTEN_URL", "postgres://db-direct/x")],
    )
    .unwrap();
    assert_eq!(
        c.postgres
            .listen_url
            .map(|u| u.expose().to_owned())
            .as_deref(),
        Some("postgres://db-direct/x")
    );
    let e = parse(MIN, &[("AUTHGATE_POSTGRES_LISTEN_URL", " ")]).unwrap_err();
    assert!(e.to_string().contains("postgres.listen_url"), "{e}");
    assert_eq!(
        SecretUrl("host=db user=u password=pw dbname=x".into()).redacted(),
        "host=db user=u password=<redacted> dbname=x"
    );
    assert_eq!(
        SecretUrl("postgres://db/x".into()).redacted(),
        "postgres://db/x"
    );
}

#[test]
fn management_listener() {
    let c = parse(MIN, &[]).unwrap();
    assert_eq!(
        c.management.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9091"),
        "on by default, on localhost"
    );
    assert_eq!(c.management.session_ttl, Duration::from_secs(30 * 60));
    assert!(c.management.bootstrap_token_file.is_none());
    let off = parse(MIN, &[("AUTHGATE_MANAGEMENT_LISTEN", "")]).unwrap();
    assert!(off.management.listen.is_none(), "empty = off");
    let off = parse(&format!("{MIN}[management]\nlisten = \"\"\n"), &[]).unwrap();
    assert!(off.management.listen.is_none());
    let c = parse(
        MIN,
        &[(
            "AUTHGATE_MANAGEMENT_BOOTSTRAP_TOKEN_FILE",
            "/var/run/secrets/authgate/bootstrap",
        )],
    )
    .unwrap();
    assert_eq!(
        c.management.bootstrap_token_file.as_deref(),
        Some(Path::new("/var/run/secrets/authgate/bootstrap"))
    );
    for (text, needle) in [
        ("[management]\nlisten = \"nowhere\"\n", "management.listen"),
        (
            "[management]\nsession_ttl = \"0s\"\n",
            "management.session_ttl",
        ),
        ("[management]\nport = 1\n", "port"),
        (
            "[management]\nlisten = \"\"\nbootstrap_token_file = \"/k\"\n",
            "management.bootstrap_token_file",
        ),
    ] {
        let e = err(&format!("{MIN}{text}"), &[]);
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    }
}

#[test]
fn layout_sets_the_schema_and_ttl_defaults() {
    let c = parse(MIN, &[]).unwrap();
    assert_eq!(c.postgres.layout, Layout::Authgate);
    assert_eq!(c.postgres.schema, "authgate");
    assert_eq!(c.cache.ttl, Duration::from_secs(60));

    let strapi = "[tokens]\nsalt = \"s\"\n[postgres]\nlayout = \"strapi5\"\n";
    let c = parse(strapi, &[]).unwrap();
    assert_eq!(c.postgres.layout, Layout::Strapi5);
    assert_eq!(c.postgres.schema, "public", "Strapi's tables are in public");
    assert_eq!(
        c.cache.ttl,
        Duration::from_secs(5),
        "without triggers the TTL bounds a revocation's delay"
    );
    let printed = c.to_redacted_toml();
    for line in [
        "layout = \"strapi5\"",
        "schema = \"public\"",
        "ttl = \"5s\"",
    ] {
        assert!(
            printed.contains(line),
            "effective value {line} in:\n{printed}"
        );
    }

    // What the file (or the environment) sets wins over the layout's default.
    let c = parse(
        &format!("{strapi}schema = \"cms\"\n[cache]\nttl = \"30s\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        (c.postgres.schema.as_str(), c.cache.ttl),
        ("cms", Duration::from_secs(30))
    );
    let c = parse(MIN, &[("AUTHGATE_POSTGRES_LAYOUT", "strapi5")]).unwrap();
    assert_eq!(
        (c.postgres.layout, c.postgres.schema.as_str(), c.cache.ttl),
        (Layout::Strapi5, "public", Duration::from_secs(5))
    );
    let e = err(MIN, &[("AUTHGATE_POSTGRES_LAYOUT", "native")]);
    assert!(
        e.contains("postgres.layout") && e.contains("strapi5"),
        "{e}"
    );
}

#[test]
fn tracing_is_off_by_default_and_the_otel_variables_set_it() {
    let c = parse(MIN, &[]).unwrap();
    assert_eq!(c.tracing, TracingConfig::default());
    assert_eq!(c.tracing.endpoint, None);
    let file = "[tokens]\nsalt = \"s\"\n[tracing]\notlp_endpoint = \"http://file:4318\"\nsample_ratio = 0.5\nservice_name = \"from-file\"\n";
    let c = parse(file, &[]).unwrap();
    let url = |c: &Config| c.tracing.endpoint.as_ref().map(|u| u.to_string());
    assert_eq!(url(&c).as_deref(), Some("http://file:4318/v1/traces"));
    assert_eq!(c.tracing.sample_ratio, 0.5);
    assert_eq!(c.tracing.service_name, "from-file");
    // The OTEL_ names win over the file...
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:4318/base"),
        ("OTEL_SERVICE_NAME", "from-otel"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
    ];
    let c = parse(file, &otel).unwrap();
    assert_eq!(url(&c).as_deref(), Some("https://otel:4318/base/v1/traces"));
    assert_eq!(c.tracing.service_name, "from-otel");
    assert_eq!(c.tracing.sample_ratio, 0.25);
    // ...and the AUTHGATE_ names over them, in either order.
    let ours = [
        ("AUTHGATE_TRACING_OTLP_ENDPOINT", "http://ours:4318"),
        ("AUTHGATE_TRACING_SERVICE_NAME", "42"),
        ("AUTHGATE_TRACING_SAMPLE_RATIO", "1"),
    ];
    for env in [
        otel.iter().chain(&ours).copied().collect::<Vec<_>>(),
        ours.iter().chain(&otel).copied().collect::<Vec<_>>(),
    ] {
        let c = parse(file, &env).unwrap();
        assert_eq!(url(&c).as_deref(), Some("http://ours:4318/v1/traces"));
        // A name that looks like a number stays a string.
        assert_eq!(c.tracing.service_name, "42");
        assert_eq!(c.tracing.sample_ratio, 1.0);
    }
    // An empty endpoint turns tracing off again.
    let c = parse(file, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).unwrap();
    assert_eq!(c.tracing.endpoint, None);
    let e = err(MIN, &[("OTEL_TRACES_SAMPLER_ARG", "lots")]);
    assert!(e.contains("tracing.sample_ratio"), "{e}");
    let e = err(MIN, &[("OTEL_TRACES_SAMPLER_ARG", "-0.1")]);
    assert!(e.contains("tracing.sample_ratio"), "{e}");
}

#[test]
fn decision_listener() {
    let c = parse(MIN, &[]).unwrap();
    assert!(c.decision.listen.is_none(), "off by default");
    let loopback: Vec<String> = c
        .decision
        .trusted_callers
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(loopback.len(), 2, "{loopback:?}");
    let on = parse(
        MIN,
        &[
            ("AUTHGATE_DECISION_LISTEN", "127.0.0.1:9092"),
            (
                "AUTHGATE_DECISION_TRUSTED_CALLERS",
                "[\"10.0.0.0/8\", \"192.0.2.7\"]",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        on.decision.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9092")
    );
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let callers = &on.decision.trusted_callers;
    assert!(callers.iter().any(|c| c.contains(ip("10.1.2.3"))));
    assert!(callers.iter().any(|c| c.contains(ip("192.0.2.7"))));
    assert!(!callers.iter().any(|c| c.contains(ip("127.0.0.1"))));
    for (text, needle) in [
        ("[decision]\nlisten = \"nowhere\"\n", "decision.listen"),
        (
            "[decision]\nlisten = \"127.0.0.1:0\"\ntrusted_callers = [\"10.0.0.0/33\"]\n",
            "decision.trusted_callers[0]",
        ),
        (
            "[decision]\nlisten = \"127.0.0.1:0\"\ntrusted_callers = []\n",
            "decision.trusted_callers",
        ),
        (
            "[decision]\ntls_cert = \"/nonexistent.pem\"\n",
            "decision.tls_key",
        ),
        ("[decision]\nport = 1\n", "port"),
    ] {
        let e = err(&format!("{MIN}{text}"), &[]);
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    }
}
