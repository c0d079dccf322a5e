//! The rules table and the actor's holdings, without a database.

use super::*;
use crate::store::admin::UserRow;

#[test]
fn rule_messages_name_flags_only_on_the_command_line() {
    let rules = [
        Rule::ContentTokenHasNoOwner,
        Rule::CustomNeedsPermission,
        Rule::PermissionsOnlyForCustom,
        Rule::ContentTokenNeedsType,
        Rule::AdminTokenHasNoType,
        Rule::AdminTokenNeedsOwner,
    ];
    for r in rules {
        assert!(!r.message().contains("--"), "{r:?}: {}", r.message());
        assert!(r.cli_message().contains("--"), "{r:?}: {}", r.cli_message());
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("7d"), Ok(Some(604_800_000)));
    assert_eq!(parse_duration("30d"), Ok(Some(2_592_000_000)));
    assert_eq!(parse_duration("90d"), Ok(Some(7_776_000_000)));
    assert_eq!(parse_duration("unlimited"), Ok(None));
    assert!(parse_duration("8d").is_err());
}

#[test]
fn management_actions() {
    assert_eq!(
        management_action(TokenKind::ContentApi, Op::Read),
        "admin::api-tokens.read"
    );
    assert_eq!(
        management_action(TokenKind::Admin, Op::Regenerate),
        "admin::admin-tokens.regenerate"
    );
}

fn user(id: i64, super_admin: bool, perms: &[&str]) -> UserRow {
    UserRow {
        id,
        email: format!("u{id}@example.com"),
        name: String::new(),
        is_active: true,
        blocked: false,
        roles: Vec::new(),
        super_admin,
        permissions: perms.iter().map(|p| Permission::new(*p, None)).collect(),
    }
}

fn admin_token(owner: i64) -> TokenRow {
    TokenRow {
        id: 7,
        kind: TokenKind::Admin,
        name: "t".into(),
        description: String::new(),
        token_type: None,
        lifespan_ms: None,
        expires_at: None,
        last_used_at: None,
        owner_id: Some(owner),
        owner_email: None,
        permissions: Vec::new(),
        encrypted_key: None,
        rate_limit: None,
        old_key_expires_at: None,
        allowed_cidrs: Vec::new(),
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
    }
}

const ALL: &[&str] = &[
    "admin::admin-tokens.read",
    "admin::admin-tokens.create",
    "admin::admin-tokens.update",
    "admin::admin-tokens.delete",
    "admin::admin-tokens.regenerate",
];

#[test]
fn a_token_actor_holds_the_intersection() {
    let read = Permission::new("admin::admin-tokens.read", None);
    let update = Permission::new("admin::admin-tokens.update", None);
    let through = |user: UserRow, token: &[&str]| {
        Actor::Token(TokenActor {
            user,
            token_id: 1,
            permissions: token.iter().map(|p| Permission::new(*p, None)).collect(),
        })
    };
    let a = through(user(1, false, ALL), &["admin::admin-tokens.read"]);
    assert!(a.holds(&read));
    assert!(!a.holds(&update), "the token lacks it");
    let a = through(user(1, false, &["admin::admin-tokens.read"]), ALL);
    assert!(!a.holds(&update), "the owner lacks it");
    let a = through(user(1, true, &[]), &["admin::admin-tokens.read"]);
    assert!(
        a.holds(&read) && !a.holds(&update),
        "a super admin's token too"
    );
    assert!(Actor::Operator.holds(&update));
    assert!(Actor::User(user(1, true, &[])).holds(&update));
}

#[tokio::test]
async fn the_rules_table() {
    let cfg = crate::config::parse_raw(
        "[tokens]\nsalt = \"s\"\n",
        std::path::Path::new("t.toml"),
        Vec::new(),
    )
    .and_then(|r| r.compile())
    .expect("config");
    let store = Store::new(&cfg.postgres).expect("pool is lazy");
    let mgr = Manager::new(&store, &cfg);
    let owner = Actor::User(user(1, false, ALL));
    let other = Actor::User(user(2, false, ALL));
    let root = Actor::User(user(3, true, &[]));
    let narrow = Actor::Token(TokenActor {
        user: user(1, false, ALL),
        token_id: 9,
        permissions: [Permission::new("admin::admin-tokens.read", None)]
            .into_iter()
            .collect(),
    });
    let t = admin_token(1);
    // (actor, op, allowed)
    let rows: &[(&Actor, Op, bool)] = &[
        (&owner, Op::Read, true),
        (&owner, Op::Update, true),
        (&owner, Op::Delete, true),
        (&owner, Op::Regenerate, true),
        (&owner, Op::ViewKey, true),
        (&other, Op::Read, true),
        (&other, Op::Update, false),
        (&other, Op::Delete, false),
        (&other, Op::Regenerate, false),
        (&other, Op::ViewKey, false),
        (&root, Op::Update, true),
        (&root, Op::Delete, true),
        (&root, Op::Regenerate, false),
        (&root, Op::ViewKey, false),
        (&narrow, Op::Read, true),
        (&narrow, Op::ViewKey, true),
        (&narrow, Op::Update, false),
        (&narrow, Op::Regenerate, false),
        (&Actor::Operator, Op::Regenerate, true),
    ];
    for (actor, op, allowed) in rows {
        assert_eq!(mgr.may(actor, *op, &t), *allowed, "{actor} {op:?}");
    }
    // Content-API tokens: the permission alone decides.
    let mut c = admin_token(1);
    c.kind = TokenKind::ContentApi;
    c.owner_id = None;
    let api = Actor::User(user(
        2,
        false,
        &["admin::api-tokens.regenerate", "admin::api-tokens.read"],
    ));
    assert!(mgr.may(&api, Op::Regenerate, &c));
    assert!(mgr.may(&api, Op::ViewKey, &c));
    assert!(!mgr.may(&api, Op::Delete, &c));
}
