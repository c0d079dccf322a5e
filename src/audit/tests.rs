//! The chain's pure parts: sealing, the canonical form (old events keep
//! theirs), [`verify`] and [`verify_head`].

use super::*;

fn ctx() -> AuditCtx {
    AuditCtx {
        actor: "root@example.com".into(),
        origin: Origin {
            via: Via::Api,
            request_id: Some("r1".into()),
            client_request_id: None,
            client_ip: Some("10.0.0.7".parse().unwrap()),
        },
        key: AuditKey::new(b"k"),
    }
}

fn draft(n: i64) -> Draft {
    Draft {
        action: "api-token.create".into(),
        target: Target {
            kind: "api-token",
            id: n,
            name: format!("t{n}"),
        },
        changes: changes(&[("name", Value::Null, json!(format!("t{n}")))]),
    }
}

fn chain(n: i64) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for i in 1..=n {
        let prev = out.last().map_or(GENESIS.to_owned(), |e| e.hash.clone());
        out.push(Event::seal(i, SystemTime::now(), draft(i), &ctx(), &prev));
    }
    out
}

#[test]
fn an_intact_chain_verifies() {
    assert_eq!(verify(&chain(5), &ctx().key), Ok(5));
    assert_eq!(verify(&[], &ctx().key), Ok(0));
}

#[test]
fn edits_deletions_and_swaps_are_named() {
    let key = ctx().key;
    let mut edited = chain(5);
    edited[2].actor = "someone@else".into();
    assert_eq!(verify(&edited, &key), Err(Broken::Edited(3)));

    let mut deleted = chain(5);
    deleted.remove(2);
    assert_eq!(verify(&deleted, &key), Err(Broken::Unlinked(4)));

    let mut swapped = chain(5);
    swapped.swap(1, 2);
    assert_eq!(verify(&swapped, &key), Err(Broken::Unlinked(3)));

    let mut cut = chain(5);
    cut.drain(..2);
    assert_eq!(verify(&cut, &key), Err(Broken::CutWithoutCheckpoint(3)));

    assert_eq!(
        verify(&chain(3), &AuditKey::new(b"other")),
        Err(Broken::Edited(1))
    );
}

#[test]
fn a_checkpointed_cut_verifies() {
    let mut events = chain(4);
    let cut_hash = events[1].hash.clone();
    events.drain(..2);
    let prev = events.last().unwrap().hash.clone();
    let checkpoint = Draft {
        action: CHECKPOINT.into(),
        target: Target {
            kind: "audit",
            id: 2,
            name: String::new(),
        },
        changes: json!({"pruned_through": 2, "last_hash": cut_hash, "count": 2}),
    };
    events.push(Event::seal(5, SystemTime::now(), checkpoint, &ctx(), &prev));
    assert_eq!(verify(&events, &ctx().key), Ok(3));
}

#[test]
fn changes_keep_only_what_differs() {
    let c = changes(&[
        ("name", json!("a"), json!("b")),
        ("description", json!(""), json!("")),
    ]);
    assert_eq!(c, json!({"name": {"before": "a", "after": "b"}}));
}

#[test]
fn canonical_form_is_fixed() {
    let e = &chain(1)[0];
    let c = e.canonical();
    assert!(c.starts_with("[1,\""), "{c}");
    assert!(
        c.contains(r#""api-token.create","root@example.com","api",["api-token",1,"t1"]"#),
        "{c}"
    );
}

#[test]
fn events_without_a_client_request_id_keep_the_old_canonical_form() {
    // The form every event written before client_request_id had: nine
    // elements. Such events verify unchanged.
    let e = &chain(1)[0];
    let old = json!([
        e.id,
        rfc3339(e.at),
        e.action,
        e.actor,
        e.via,
        [e.target_kind, e.target_id, e.target_name],
        e.changes,
        e.request_id,
        e.client_ip,
    ])
    .to_string();
    assert_eq!(e.canonical(), old);
}

#[test]
fn the_client_request_id_is_covered_by_the_chain() {
    let key = ctx().key;
    let mut c = ctx();
    c.origin.client_request_id = Some("client-1".into());
    let e = Event::seal(1, SystemTime::now(), draft(1), &c, GENESIS);
    assert!(
        e.canonical().ends_with(r#","10.0.0.7","client-1"]"#),
        "{}",
        e.canonical()
    );
    assert_eq!(verify(std::slice::from_ref(&e), &key), Ok(1));
    for forged in [None, Some("client-2".to_owned())] {
        let mut f = e.clone();
        f.client_request_id = forged;
        assert_eq!(verify(&[f], &key), Err(Broken::Edited(1)));
    }
    // Nor can an id be added to an event that had none.
    let mut f = chain(1).remove(0);
    f.client_request_id = Some("r1".into());
    assert_eq!(verify(&[f], &key), Err(Broken::Edited(1)));
}

#[test]
fn gaps_in_ids_are_fine_while_the_hashes_link() {
    let mut events = chain(2);
    let prev = events[1].hash.clone();
    events.push(Event::seal(7, SystemTime::now(), draft(7), &ctx(), &prev));
    assert_eq!(verify(&events, &ctx().key), Ok(3));
    let mut back = chain(2);
    let prev = back[1].hash.clone();
    back.push(Event::seal(2, SystemTime::now(), draft(3), &ctx(), &prev));
    assert_eq!(verify(&back, &ctx().key), Err(Broken::Unlinked(2)));
}

#[test]
fn a_head_kept_outside_catches_a_cut_tail() {
    let key = ctx().key;
    let events = chain(5);
    let head: Head = events[4].head().parse().unwrap();
    assert_eq!(verify_head(&events, &key, &head), Ok(5));
    // The newest two cut: the rest still verifies alone, not against the head.
    assert_eq!(verify(&events[..3], &key), Ok(3));
    assert_eq!(
        verify_head(&events[..3], &key, &head),
        Err(Broken::HeadNotReached {
            head: 5,
            end: "it ends at event 3".into()
        })
    );
    assert!(matches!(
        verify_head(&[], &key, &head),
        Err(Broken::HeadNotReached { head: 5, .. })
    ));
    let wrong = Head {
        id: 3,
        hash: "0".repeat(64),
    };
    assert_eq!(
        verify_head(&events, &key, &wrong),
        Err(Broken::HeadMismatch(3))
    );
    let mut pruned = chain(4);
    let cut_hash = pruned[1].hash.clone();
    pruned.drain(..2);
    let prev = pruned[1].hash.clone();
    let checkpoint = Draft {
        action: CHECKPOINT.into(),
        target: Target {
            kind: "audit",
            id: 2,
            name: String::new(),
        },
        changes: json!({"pruned_through": 2, "last_hash": cut_hash, "count": 2}),
    };
    pruned.push(Event::seal(5, SystemTime::now(), checkpoint, &ctx(), &prev));
    let old: Head = chain(1)[0].head().parse().unwrap();
    assert_eq!(
        verify_head(&pruned, &key, &old),
        Err(Broken::HeadPruned { head: 1, first: 3 })
    );
    for bad in ["", "5", "x:abc", "0:00", &format!("5:{}", "g".repeat(64))] {
        assert!(bad.parse::<Head>().is_err(), "{bad}");
    }
}
