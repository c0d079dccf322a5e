//! The diff of two snapshots, and the events it becomes.

use super::*;

fn snap(rows: &[(i64, [Option<i64>; 2], i32)]) -> Snapshot {
    rows.iter()
        .map(|(id, links, digest)| {
            (
                *id,
                RowState {
                    links: *links,
                    digest: *digest,
                },
            )
        })
        .collect()
}

fn tables(set: &[(Table, Snapshot)]) -> Vec<Snapshot> {
    let mut v = vec![Snapshot::default(); Table::ALL.len()];
    for (t, s) in set {
        v[t.index()] = s.clone();
    }
    v
}

#[test]
fn a_token_regenerated_created_or_deleted() {
    let old = snap(&[(1, [None, None], 10), (2, [None, None], 20)]);
    let now = tables(&[(
        Table::Tokens,
        snap(&[(1, [None, None], 11), (3, [None, None], 30)]),
    )]);
    let h = TokenHash([7; 64]);
    let keys = HashMap::from([(1, h)]);
    assert_eq!(
        events(Table::Tokens, &old, &now, &keys),
        vec![
            Event::Token {
                id: 1,
                hash: Some(h)
            },
            Event::Token { id: 2, hash: None },
            Event::Token { id: 3, hash: None },
        ]
    );
    assert!(
        events(Table::Tokens, &now[Table::Tokens.index()], &now, &keys).is_empty(),
        "no change, no event"
    );
}

#[test]
fn permissions_follow_their_links() {
    // admin permission 5 belongs to role 9 and to token 4.
    let now = tables(&[
        (Table::AdminPermissions, snap(&[(5, [None, None], 2)])),
        (
            Table::RolePermissionLinks,
            snap(&[(1, [Some(5), Some(9)], 0)]),
        ),
        (
            Table::TokenAdminPermissionLinks,
            snap(&[(1, [Some(5), Some(4)], 0)]),
        ),
    ]);
    let old = snap(&[(5, [None, None], 1)]);
    assert_eq!(
        events(Table::AdminPermissions, &old, &now, &HashMap::new()),
        vec![Event::Role(9), Event::Token { id: 4, hash: None }]
    );
    // A role link removed (a permission revoked): the role.
    let old_links = snap(&[(1, [Some(5), Some(9)], 0), (2, [Some(6), Some(8)], 0)]);
    assert_eq!(
        events(
            Table::RolePermissionLinks,
            &old_links,
            &now,
            &HashMap::new()
        ),
        vec![Event::Role(8)]
    );
    // A content-API permission's action edited: its token.
    let now = tables(&[
        (Table::TokenPermissions, snap(&[(3, [None, None], 2)])),
        (
            Table::TokenPermissionLinks,
            snap(&[(1, [Some(3), Some(12)], 0)]),
        ),
    ]);
    assert_eq!(
        events(
            Table::TokenPermissions,
            &snap(&[(3, [None, None], 1)]),
            &now,
            &HashMap::new()
        ),
        vec![Event::Token { id: 12, hash: None }]
    );
    // A user's role link moved from user 1 to user 2: both.
    let now = tables(&[(Table::UserRoleLinks, snap(&[(1, [Some(2), Some(3)], 0)]))]);
    assert_eq!(
        events(
            Table::UserRoleLinks,
            &snap(&[(1, [Some(1), Some(3)], 0)]),
            &now,
            &HashMap::new()
        ),
        vec![Event::User(1), Event::User(2)]
    );
}
