//! The audit log: hash chain, tamper detection, concurrent appends, token shortening.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lightbox::audit::{self, Action, AuditEntry, AuditError, AuditFilter, Outcome, Source};
use lightbox::store::Store;
use rusqlite::Connection;
use serde_json::{Value, json};

const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:ReadStudy:ACC-0001";
/// Shaped like the engine's tokens: 46 hex digits.
const TOKEN: &str = "0123456789abcdef0123456789abcdef89abcdef000042";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).single().expect("valid date")
}

/// An entry with every optional field set, so every column can be tampered with.
fn full_entry(i: usize) -> AuditEntry {
    AuditEntry::new("dr.lee", Source::Console, Action::Approve)
        .execution(format!("{ARN}-{i}"))
        .token(TOKEN)
        .reason(format!("read complete {i}"))
        .before(json!({"status": "RUNNING"}))
        .after(json!({"status": "SUCCEEDED"}))
        .outcome(if i.is_multiple_of(2) { Outcome::Ok } else { Outcome::Error(format!("conflict {i}")) })
}

fn store_with(n: usize) -> Store {
    let store = Store::in_memory().expect("store");
    audit::ensure_schema(store.conn()).expect("schema");
    for i in 0..n {
        audit::record(store.conn(), &full_entry(i), t0() + Duration::seconds(i as i64)).expect("record");
    }
    store
}

/// Tamper as an attacker with the sqlite3 shell would: drop the guards first.
fn tamper(conn: &Connection, sql: &str) {
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;
         DROP TRIGGER IF EXISTS audit_head_forward; DROP TRIGGER IF EXISTS audit_head_no_delete;",
    )
    .expect("drop triggers");
    conn.execute_batch(sql).expect("tamper");
}

fn bad_seq(store: &Store) -> Option<i64> {
    let report = audit::verify(store.conn()).expect("verify");
    assert_eq!(report.ok, report.first_bad.is_none());
    report.first_bad.map(|(seq, _)| seq)
}

#[test]
fn records_chain_and_verify() {
    let store = store_with(5);
    let rows = audit::list(store.conn(), &AuditFilter::default()).expect("list");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![5, 4, 3, 2, 1]);
    assert_eq!(rows[4].prev_hash, audit::GENESIS_HASH);
    for pair in rows.windows(2) {
        assert_eq!(pair[1].hash, pair[0].prev_hash);
    }
    assert!(rows.iter().all(|r| r.hash.len() == 64));
    let report = audit::verify(store.conn()).expect("verify");
    assert!(report.ok, "{report}");
    assert_eq!(report.rows, 5);
    assert_eq!(report.head, Some((5, rows[0].hash.clone())));
    assert_eq!(report.to_json()["result"], "OK");
}

#[test]
fn empty_log_verifies_even_without_tables() {
    let store = Store::in_memory().expect("store");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(report.ok);
    assert_eq!(report.rows, 0);
    assert!(audit::list(store.conn(), &AuditFilter::default()).expect("list").is_empty());
}

#[test]
fn record_creates_schema_itself() {
    let store = Store::in_memory().expect("store");
    let rec = audit::record(store.conn(), &full_entry(0), t0()).expect("record");
    assert_eq!(rec.seq, 1);
    assert!(audit::verify(store.conn()).expect("verify").ok);
}

#[test]
fn triggers_reject_update_and_delete() {
    let store = store_with(3);
    let c = store.conn();
    assert!(c.execute("UPDATE audit_log SET reason = 'x' WHERE seq = 2", []).is_err());
    assert!(c.execute("DELETE FROM audit_log WHERE seq = 3", []).is_err());
    assert!(c.execute("DELETE FROM audit_head", []).is_err());
    assert!(c.execute("UPDATE audit_head SET seq = 2", []).is_err());
    assert!(audit::verify(c).expect("verify").ok);
}

#[test]
fn editing_any_column_of_any_row_is_detected() {
    let edits = [
        ("seq", "seq = seq + 1000"),
        ("ts_ms", "ts_ms = ts_ms + 1"),
        ("ts_ms", "ts_ms = 'yesterday'"),
        ("actor", "actor = actor || 'x'"),
        ("source", "source = 'cli'"),
        ("action", "action = 'reject'"),
        ("execution_arn", "execution_arn = execution_arn || 'x'"),
        ("execution_arn", "execution_arn = NULL"),
        ("task_token", "task_token = '01234568…'"),
        ("task_token", "task_token = NULL"),
        ("reason", "reason = reason || '.'"),
        ("reason", "reason = NULL"),
        ("before", "before = '{\"status\":\"FAILED\"}'"),
        ("after", "after = NULL"),
        ("result", "result = CASE result WHEN 'ok' THEN 'error' ELSE 'ok' END"),
        ("error", "error = CASE WHEN error IS NULL THEN 'boom' ELSE NULL END"),
        ("prev_hash", "prev_hash = CASE WHEN prev_hash LIKE '1%' THEN '2' ELSE '1' END || substr(prev_hash, 2)"),
        ("hash", "hash = upper(hash)"),
        ("hash", "hash = CAST(hash AS BLOB)"),
    ];
    for seq in 1..=4 {
        for (column, set) in edits {
            let store = store_with(4);
            tamper(store.conn(), &format!("UPDATE audit_log SET {set} WHERE seq = {seq}"));
            let bad = bad_seq(&store);
            assert!(bad.is_some(), "edit of {column} ({set}) in row {seq} was not detected");
            assert!(bad >= Some(seq), "edit of {column} in row {seq} reported at {bad:?}");
        }
    }
}

#[test]
fn rewriting_one_row_consistently_is_still_detected() {
    // The edited row gets a well-formed hash of its own: it cannot match the canonical
    // encoding, and the next row's prev_hash (or the head) would not match either.
    for seq in [2, 4] {
        let store = store_with(4);
        let forged = "ab".repeat(32);
        tamper(store.conn(), &format!("UPDATE audit_log SET reason = 'nothing to see', hash = '{forged}' WHERE seq = {seq}"));
        assert_eq!(bad_seq(&store), Some(seq));
    }
}

#[test]
fn deleting_rows_is_detected() {
    let middle = store_with(5);
    tamper(middle.conn(), "DELETE FROM audit_log WHERE seq = 3");
    assert_eq!(bad_seq(&middle), Some(4));

    let first = store_with(5);
    tamper(first.conn(), "DELETE FROM audit_log WHERE seq = 1");
    assert_eq!(bad_seq(&first), Some(2));

    let last = store_with(5);
    tamper(last.conn(), "DELETE FROM audit_log WHERE seq = 5");
    let report = audit::verify(last.conn()).expect("verify");
    assert!(!report.ok);
    assert_eq!(report.first_bad.as_ref().map(|b| b.0), Some(5));
    assert!(report.first_bad.as_ref().is_some_and(|b| b.1.contains("missing")), "{report}");

    let all = store_with(3);
    tamper(all.conn(), "DELETE FROM audit_log");
    assert_eq!(bad_seq(&all), Some(3));

    let head = store_with(3);
    tamper(head.conn(), "DELETE FROM audit_head");
    assert_eq!(bad_seq(&head), Some(3));
}

#[test]
fn appending_after_a_deleted_tail_keeps_the_gap_visible() {
    let store = store_with(4);
    tamper(store.conn(), "DELETE FROM audit_log WHERE seq = 4");
    let rec = audit::record(store.conn(), &full_entry(9), t0() + Duration::hours(1)).expect("record");
    assert_eq!(rec.seq, 5);
    assert_eq!(bad_seq(&store), Some(5));
}

#[test]
fn appending_refuses_a_log_without_its_head() {
    let store = store_with(2);
    tamper(store.conn(), "DELETE FROM audit_head");
    let err = audit::record(store.conn(), &full_entry(3), t0()).expect_err("must refuse");
    assert!(matches!(err, AuditError::Damaged(_)), "{err}");
    // Nothing was appended.
    assert_eq!(audit::verify(store.conn()).expect("verify").rows, 2);
}

#[test]
fn inserted_row_is_detected() {
    let store = store_with(3);
    let rows = audit::list(store.conn(), &AuditFilter::default()).expect("list");
    let prev = &rows[0].hash;
    tamper(
        store.conn(),
        &format!(
            "INSERT INTO audit_log (seq, ts_ms, actor, source, action, result, prev_hash, hash)
             VALUES (4, 0, 'mallory', 'cli', 'approve', 'ok', '{prev}', '{}')",
            "cd".repeat(32)
        ),
    );
    assert_eq!(bad_seq(&store), Some(4));
}

#[test]
fn swapping_rows_is_detected() {
    // Whole rows trade places (seq numbers exchanged).
    let store = store_with(4);
    tamper(
        store.conn(),
        "UPDATE audit_log SET seq = -2 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -2;",
    );
    assert_eq!(bad_seq(&store), Some(2));

    // Contents trade places, seq and chain columns stay.
    let store = store_with(4);
    tamper(
        store.conn(),
        "CREATE TEMP TABLE t AS SELECT * FROM audit_log WHERE seq IN (2, 3);
         UPDATE audit_log SET ts_ms = (SELECT ts_ms FROM t WHERE seq = 5 - audit_log.seq),
                              execution_arn = (SELECT execution_arn FROM t WHERE seq = 5 - audit_log.seq),
                              reason = (SELECT reason FROM t WHERE seq = 5 - audit_log.seq),
                              result = (SELECT result FROM t WHERE seq = 5 - audit_log.seq),
                              error = (SELECT error FROM t WHERE seq = 5 - audit_log.seq)
         WHERE seq IN (2, 3);",
    );
    assert_eq!(bad_seq(&store), Some(2));

    // Rows trade places with their hashes too (as if inserted in the other order).
    let store = store_with(4);
    tamper(
        store.conn(),
        "CREATE TEMP TABLE s AS SELECT * FROM audit_log WHERE seq IN (2, 3);
         DELETE FROM audit_log WHERE seq IN (2, 3);
         INSERT INTO audit_log SELECT 5 - seq, ts_ms, actor, source, action, execution_arn, task_token, reason,
                                      before, after, result, error, prev_hash, hash, intent_seq, reason_code FROM s;",
    );
    assert_eq!(bad_seq(&store), Some(2));
}

#[test]
fn concurrent_appends_from_two_connections_form_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lightbox.db");
    {
        let store = Store::open(&path).expect("open");
        audit::ensure_schema(store.conn()).expect("schema");
    }
    const PER_THREAD: usize = 60;
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = [Source::Console, Source::Cli]
        .into_iter()
        .map(|source| {
            let path = path.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).expect("open");
                start.wait();
                for i in 0..PER_THREAD {
                    let entry = AuditEntry::new(format!("{source}-user"), source, Action::Claim).execution(format!("{ARN}-{i}"));
                    audit::record(store.conn(), &entry, Utc::now()).expect("record");
                    // Give the other writer a chance, so appends interleave.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let store = Store::open(&path).expect("open");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(report.ok, "{report}");
    assert_eq!(report.rows, 2 * PER_THREAD as u64);
    let mut seqs: Vec<i64> = audit::list(store.conn(), &AuditFilter::default()).expect("list").iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=(2 * PER_THREAD) as i64).collect::<Vec<_>>());
    for source in ["console", "cli"] {
        let n =
            audit::list(store.conn(), &AuditFilter { actor: Some(format!("{source}-user")), ..Default::default() }).expect("list").len();
        assert_eq!(n, PER_THREAD);
    }
}

/// Every audited action starts with `begin`, whose preflight reads the head and the log's
/// last seq outside any transaction. Read in two statements, another process's append
/// between them looked like "rows were added behind the head": the action was refused as
/// if the log were damaged (seen with six concurrent `outbox retry`). Preflights racing
/// appends must never see a damaged log, and intents and outcomes from several writers
/// form one chain.
#[test]
fn preflights_racing_appends_never_report_a_damaged_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lightbox.db");
    {
        let store = Store::open(&path).expect("open");
        audit::ensure_schema(store.conn()).expect("schema");
    }
    const WRITERS: usize = 2;
    const PER_WRITER: usize = 150;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let connect = |path: &std::path::Path| {
        let conn = Connection::open(path).expect("open");
        conn.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
        conn
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let conn = connect(&path);
                for i in 0..PER_WRITER {
                    let entry = AuditEntry::new(format!("user-{t}"), Source::Cli, Action::Claim).execution(format!("{ARN}-{t}-{i}"));
                    let intent = audit::begin(&conn, &entry, Utc::now()).unwrap_or_else(|e| panic!("writer {t}, action {i}: {e}"));
                    audit::finish(&conn, intent, &entry, Utc::now()).unwrap_or_else(|e| panic!("writer {t}, outcome {i}: {e}"));
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let conn = connect(&path);
                let entry = AuditEntry::new("checker", Source::Cli, Action::Claim).execution(ARN);
                let mut checks = 0u64;
                while done.load(std::sync::atomic::Ordering::SeqCst) < WRITERS {
                    if let Err(e) = audit::preflight(&conn, &entry) {
                        panic!("preflight {checks} saw a damaged log while others appended: {e}");
                    }
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    for h in writers {
        h.join().expect("no writer was refused");
    }
    for h in readers {
        assert!(h.join().expect("no preflight saw a damaged log") > 0);
    }
    let store = Store::open(&path).expect("open");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(report.ok, "{report}");
    assert_eq!(report.rows, (2 * WRITERS * PER_WRITER) as u64);
}

#[test]
fn full_task_token_is_never_stored() {
    let store = Store::in_memory().expect("store");
    let other_token = "fedcba9876543210fedcba9876543210";
    let entry = AuditEntry::new("dr.lee", Source::Cli, Action::Reject)
        .execution(ARN)
        .token(TOKEN)
        .reason(format!("wrong study, token {TOKEN}, also {other_token}"))
        .before(json!({"status": "WAITING", "token": TOKEN}))
        .after(json!({"status": "FAILED", "nested": [{"t": TOKEN}]}))
        .outcome(Outcome::Error(format!("Task token {TOKEN} does not exist")));
    assert!(!format!("{entry:?}").contains(TOKEN));
    let rec = audit::record(store.conn(), &entry, t0()).expect("record");
    assert_eq!(rec.task_token.as_deref(), Some("01234567…"));

    // No column of any audit row holds either token in full.
    let mut st = store.conn().prepare("SELECT * FROM audit_log").expect("prepare");
    let ncols = st.column_count();
    let mut rows = st.query([]).expect("query");
    let mut seen = 0;
    while let Some(r) = rows.next().expect("row") {
        for i in 0..ncols {
            let v: rusqlite::types::Value = r.get(i).expect("value");
            let text = format!("{v:?}");
            assert!(!text.contains(TOKEN) && !text.contains(other_token), "column {i} holds a full token: {text}");
        }
        seen += 1;
    }
    assert_eq!(seen, 1);
    let j = rec.to_json().to_string();
    assert!(!j.contains(TOKEN));
    assert!(rec.before.as_deref().is_some_and(|b| b.contains("01234567…")));

    // The log can still be searched by the full token or its short form.
    for target in [TOKEN, "01234567…", ARN] {
        let found = audit::list(store.conn(), &AuditFilter { target: Some(target.into()), ..Default::default() }).expect("list");
        assert_eq!(found.len(), 1, "target {target}");
    }
    assert!(audit::verify(store.conn()).expect("verify").ok);
}

#[test]
fn control_characters_and_oversized_values_are_neutralized() {
    let store = Store::in_memory().expect("store");
    let entry = AuditEntry::new("dr.lee\u{1b}[2J", Source::Console, Action::Escalate)
        .reason("line one\nline two \u{1b}[31mred\u{202E}")
        .after(json!({"status": "x".repeat(5000)}));
    let rec = audit::record(store.conn(), &entry, t0()).expect("record");
    assert!(!rec.actor.contains('\u{1b}'));
    let reason = rec.reason.as_deref().expect("reason");
    assert!(!reason.contains('\n') && !reason.contains('\u{1b}') && !reason.contains('\u{202E}'), "{reason}");
    let after = rec.after.as_deref().expect("after");
    assert!(after.len() < 1200, "after is {} bytes", after.len());
    assert!(serde_json::from_str::<serde_json::Value>(after).is_ok());
    let long_reason = AuditEntry::new("a", Source::Cli, Action::Stop).reason("why ".repeat(1000));
    let rec = audit::record(store.conn(), &long_reason, t0()).expect("record");
    assert!(rec.reason.as_deref().is_some_and(|r| r.chars().count() <= 1000 && r.ends_with('…')));
    assert!(audit::verify(store.conn()).expect("verify").ok);
}

#[test]
fn invalid_entries_are_rejected() {
    let store = Store::in_memory().expect("store");
    let bad_action = AuditEntry::new("dr.lee", Source::Cli, Action::Other("Drop Table".into()));
    assert!(matches!(audit::record(store.conn(), &bad_action, t0()), Err(AuditError::Invalid(_))));
    let no_actor = AuditEntry::new("  ", Source::Cli, Action::Stop);
    assert!(matches!(audit::record(store.conn(), &no_actor, t0()), Err(AuditError::Invalid(_))));
    let custom = AuditEntry::new("dr.lee", Source::Cli, Action::Other("set-priority".into()));
    assert_eq!(audit::record(store.conn(), &custom, t0()).expect("record").action, "set-priority");
    assert_eq!(Action::parse("reveal-phi"), Action::RevealPhi);
    assert_eq!(Action::parse("reassign"), Action::Other("reassign".into()));
}

#[test]
fn list_filters() {
    let store = Store::in_memory().expect("store");
    let c = store.conn();
    let e = |actor: &str, action: Action| AuditEntry::new(actor, Source::Console, action);
    audit::record(c, &e("ann", Action::Claim).execution(ARN), t0()).expect("record");
    audit::record(c, &e("bob", Action::RevealPhi).execution(ARN).reason("consult"), t0() + Duration::minutes(1)).expect("record");
    audit::record(c, &e("ann", Action::Approve).token(TOKEN), t0() + Duration::minutes(2)).expect("record");
    audit::record(c, &e("ann", Action::Unclaim), t0() + Duration::minutes(3)).expect("record");

    let seqs = |f: AuditFilter| audit::list(c, &f).expect("list").iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(AuditFilter::default()), vec![4, 3, 2, 1]);
    assert_eq!(seqs(AuditFilter { actor: Some("ann".into()), ..Default::default() }), vec![4, 3, 1]);
    assert_eq!(seqs(AuditFilter { action: Some("reveal-phi".into()), ..Default::default() }), vec![2]);
    assert_eq!(seqs(AuditFilter { target: Some(ARN.into()), ..Default::default() }), vec![2, 1]);
    assert_eq!(seqs(AuditFilter { target: Some(TOKEN.into()), ..Default::default() }), vec![3]);
    assert_eq!(seqs(AuditFilter { since: Some(t0() + Duration::minutes(2)), ..Default::default() }), vec![4, 3]);
    assert_eq!(seqs(AuditFilter { limit: 2, ..Default::default() }), vec![4, 3]);
    assert_eq!(seqs(AuditFilter { limit: 2, before_seq: Some(3), ..Default::default() }), vec![2, 1]);
}

#[test]
fn to_json_shape() {
    let store = store_with(2);
    let rows = audit::list(store.conn(), &AuditFilter::default()).expect("list");
    let j = rows[0].to_json();
    assert_eq!(j["seq"], 2);
    assert_eq!(j["time"], "2025-03-01T08:00:01.000Z");
    assert_eq!(j["actor"], "dr.lee");
    assert_eq!(j["source"], "console");
    assert_eq!(j["action"], "approve");
    assert_eq!(j["executionArn"], format!("{ARN}-1"));
    assert_eq!(j["taskToken"], "01234567…");
    assert_eq!(j["before"], json!({"status": "RUNNING"}));
    assert_eq!(j["after"], json!({"status": "SUCCEEDED"}));
    assert_eq!(j["result"], "error");
    assert_eq!(j["error"], "conflict 1");
    assert_eq!(j["prevHash"], rows[1].hash);
    assert_eq!(j["hash"], rows[0].hash);
    let line = rows[0].to_string();
    assert!(line.contains("approve") && line.contains("error: conflict 1"), "{line}");
}

#[test]
fn audited_records_the_outcome() {
    let store = Store::in_memory().expect("store");
    let c = store.conn();
    let entry = AuditEntry::new("dr.lee", Source::Cli, Action::Redrive).execution(ARN).reason("PACS back up");

    let v: Result<u32, anyhow::Error> = audit::audited(c, entry.clone(), || Ok(7));
    assert_eq!(v.expect("ok"), 7);
    let r: Result<u32, anyhow::Error> = audit::audited(c, entry.clone(), || Err(anyhow::anyhow!("execution is not redrivable")));
    assert!(r.is_err());
    let with: Result<(), anyhow::Error> = audit::audited_with(c, entry.clone(), |e| {
        e.before = Some(json!({"status": "FAILED"}));
        e.after = Some(json!({"status": "RUNNING"}));
        Ok(())
    });
    with.expect("ok");

    let all = audit::list(c, &AuditFilter::default()).expect("list");
    // Each action is an intent row and then its outcome row, which names the intent.
    assert_eq!(all.len(), 6);
    let rows: Vec<_> = all.iter().filter(|r| !r.is_intent()).collect();
    assert_eq!(rows.len(), 3);
    for (outcome, intent) in all.iter().step_by(2).zip(all.iter().skip(1).step_by(2)) {
        assert!(intent.is_intent(), "{intent:?}");
        assert_eq!(outcome.intent_seq, Some(intent.seq));
    }
    assert_eq!((rows[2].result.as_str(), rows[2].error.as_deref()), ("ok", None));
    assert_eq!((rows[1].result.as_str(), rows[1].error.as_deref()), ("error", Some("execution is not redrivable")));
    assert_eq!(rows[0].after.as_deref(), Some(r#"{"status":"RUNNING"}"#));

    // An action that cannot be audited is not carried out.
    let mut ran = false;
    let bad = AuditEntry::new("dr.lee", Source::Cli, Action::Other("NOT VALID".into()));
    let r: Result<(), anyhow::Error> = audit::audited(c, bad, || {
        ran = true;
        Ok(())
    });
    assert!(r.is_err());
    assert!(!ran);
    assert!(audit::verify(c).expect("verify").ok);
}

#[test]
fn actor_prefers_configured_user() {
    assert_eq!(audit::actor(Some(" dr.lee ")), "dr.lee");
    assert_eq!(audit::actor(Some("")), audit::os_user());
    assert_eq!(audit::actor(None), audit::os_user());
    assert!(!audit::os_user().is_empty());
}

// ----- anchored outside the database ------------------------------------------------

/// A store on disk (so the log has its anchor file beside it) with `n` rows.
fn file_store(dir: &tempfile::TempDir, name: &str, n: usize, entry: impl Fn(usize) -> AuditEntry) -> Store {
    let store = Store::open(&dir.path().join(name)).expect("store");
    for i in 0..n {
        audit::record(store.conn(), &entry(i), t0() + Duration::seconds(i as i64)).expect("record");
    }
    store
}

#[test]
fn wiping_the_whole_log_is_detected() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = file_store(&dir, "a.db", 4, full_entry);
    assert!(audit::verify(store.conn()).expect("verify").ok);
    tamper(store.conn(), "DELETE FROM audit_log; DELETE FROM audit_head;");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(!report.ok, "a wiped log must not verify: {report}");
    assert!(report.to_string().contains("wiped"), "{report}");
    // Dropping the tables altogether is the same wipe.
    tamper(store.conn(), "DROP TABLE audit_log; DROP TABLE audit_head;");
    assert!(!audit::verify(store.conn()).expect("verify").ok);
}

#[test]
fn deleting_the_tail_together_with_the_head_is_detected() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = file_store(&dir, "a.db", 5, full_entry);
    let hash3: String = store.conn().query_row("SELECT hash FROM audit_log WHERE seq = 3", [], |r| r.get(0)).expect("hash");
    // The log now ends at seq 3 and its head agrees: the chain alone looks whole.
    tamper(store.conn(), &format!("DELETE FROM audit_log WHERE seq > 3; UPDATE audit_head SET seq = 3, hash = '{hash3}';"));
    let report = audit::verify(store.conn()).expect("verify");
    assert!(!report.ok, "{report}");
    assert_eq!(report.first_bad.as_ref().map(|b| b.0), Some(4), "{report}");
    assert!(report.to_string().contains("anchor"), "{report}");
}

#[test]
fn rewriting_the_whole_chain_is_detected_by_the_anchor() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = file_store(&dir, "a.db", 4, full_entry);
    // A forger builds a consistent chain elsewhere (their own contents, correct hashes)
    // and puts it in place of the real one, head included.
    let forged = file_store(&dir, "forged.db", 4, |i| full_entry(i).reason("nothing happened"));
    drop(forged);
    tamper(
        store.conn(),
        &format!(
            "ATTACH '{}' AS f; DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM f.audit_log;
             DELETE FROM audit_head; INSERT INTO audit_head SELECT * FROM f.audit_head; DETACH f;",
            dir.path().join("forged.db").display()
        ),
    );
    let report = audit::verify(store.conn()).expect("verify");
    assert!(!report.ok, "{report}");
    assert!(report.to_string().contains("rewritten"), "{report}");
    // A forger who also replaces the anchor file is still caught by the heads the log
    // published when each row was written.
    std::fs::copy(dir.path().join("forged.db.anchor"), dir.path().join("a.db.anchor")).expect("copy anchor");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(!report.ok && report.to_string().contains("published"), "{report}");
    // Without a key, one who rewrites the published heads too is not detected: that is
    // what the key is for (see the keyed test in tests/cli.rs), and why heads leave the machine.
    tamper(
        store.conn(),
        &format!(
            "ATTACH '{}' AS f; DELETE FROM outbox WHERE topic = 'audit';
             INSERT INTO outbox (execution_arn, event_id, topic, payload, created_ms)
               SELECT execution_arn, event_id, topic, payload, created_ms FROM f.outbox WHERE topic = 'audit'; DETACH f;",
            dir.path().join("forged.db").display()
        ),
    );
    assert!(audit::verify(store.conn()).expect("verify").ok);
}

/// Seen: an empty (or comment-only) anchor file beside a wiped log, or an anchor trimmed
/// to match a cut tail, passed verify — with or without the key.
#[test]
fn an_emptied_or_trimmed_anchor_does_not_hide_a_wipe_or_a_cut_tail() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = file_store(&dir, "a.db", 6, full_entry);
    let anchor = dir.path().join("a.db.anchor");
    let lines: Vec<String> = std::fs::read_to_string(&anchor).expect("anchor").lines().map(str::to_string).collect();
    // A cut tail, with the head moved back and the anchor trimmed to match.
    let hash3: String = store.conn().query_row("SELECT hash FROM audit_log WHERE seq = 3", [], |r| r.get(0)).expect("hash");
    tamper(store.conn(), &format!("DELETE FROM audit_log WHERE seq > 3; UPDATE audit_head SET seq = 3, hash = '{hash3}';"));
    std::fs::write(
        &anchor,
        lines
            .iter()
            .filter(|l| l.split(' ').next().and_then(|s| s.parse::<i64>().ok()).is_some_and(|s| s <= 3))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .expect("trim");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(!report.ok, "{report}");
    assert!(report.to_string().contains("seq 6 was published"), "{report}");
    // The whole log wiped and the anchor emptied (or left with a comment).
    tamper(store.conn(), "DELETE FROM audit_log; DELETE FROM audit_head;");
    for text in ["", "# x\n"] {
        std::fs::write(&anchor, text).expect("empty");
        let report = audit::verify(store.conn()).expect("verify");
        assert!(!report.ok, "{text:?}: {report}");
    }
}

#[test]
fn a_deleted_anchor_file_is_detected_and_a_lagging_one_is_filled_in() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = file_store(&dir, "a.db", 3, full_entry);
    let anchor = dir.path().join("a.db.anchor");
    let lines = std::fs::read_to_string(&anchor).expect("anchor");
    assert_eq!(lines.lines().count(), 3);
    // A crash between a commit and its anchor line: the anchor lags, which is not tampering,
    // and the next append fills it in.
    let two: String = lines.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&anchor, two).expect("write");
    assert!(audit::verify(store.conn()).expect("verify").ok);
    audit::record(store.conn(), &full_entry(9), t0() + Duration::hours(1)).expect("record");
    let seqs: Vec<String> =
        std::fs::read_to_string(&anchor).expect("anchor").lines().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect();
    assert_eq!(seqs, vec!["1", "2", "3", "4"]);
    std::fs::remove_file(&anchor).expect("rm");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(!report.ok && report.to_string().contains("anchor file"), "{report}");
    // The next action does not quietly rebuild it from the database (that would hide a
    // truncation made together with the deletion).
    audit::record(store.conn(), &full_entry(10), t0() + Duration::hours(2)).expect("record");
    assert!(!anchor.exists());
    assert!(!audit::verify(store.conn()).expect("verify").ok);
    // An operator starts a new one, on the record.
    assert!(audit::reanchor(store.conn(), "ops.kim", "", t0()).is_err(), "needs a reason");
    let rec = audit::reanchor(store.conn(), "ops.kim", "anchor lost with the old disk", t0() + Duration::hours(3)).expect("reanchor");
    let report = audit::verify(store.conn()).expect("verify");
    assert!(report.ok, "{report}");
    assert_eq!(report.reanchored_at, Some(rec.seq));
    assert!(audit::reanchor(store.conn(), "ops.kim", "again", t0()).is_err(), "only when missing");
}

#[test]
fn every_append_publishes_the_head_as_a_workflow_event() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = file_store(&dir, "a.db", 2, full_entry);
    let rows = store.outbox(false, 100).expect("outbox");
    let heads: Vec<Value> =
        rows.iter().filter(|r| r.topic == audit::HEAD_TOPIC).map(|r| serde_json::from_str(&r.payload).expect("json")).collect();
    assert_eq!(heads.len(), 2);
    let head = audit::verify(store.conn()).expect("verify").head.expect("head");
    assert_eq!(heads[1]["detail-type"], "Audit Head");
    assert_eq!(heads[1]["source"], "lightbox");
    assert_eq!(heads[1]["version"], "0");
    assert_eq!(heads[1]["detail"]["seq"], head.0);
    assert_eq!(heads[1]["detail"]["hash"], head.1.as_str());
}

#[test]
fn an_intent_without_its_outcome_fails_verify_until_resolved() {
    let store = Store::in_memory().expect("store");
    let c = store.conn();
    let entry = AuditEntry::new("dr.lee", Source::Cli, Action::Approve).execution(ARN).token(TOKEN);
    let done = audit::begin(c, &entry, t0()).expect("begin");
    audit::finish(c, done, &entry.clone().outcome(Outcome::Ok), t0()).expect("finish");
    assert!(audit::verify(c).expect("verify").ok);
    // The process dies after the action took effect, before its outcome.
    let lost = audit::begin(c, &entry, t0()).expect("begin");
    let report = audit::verify(c).expect("verify");
    assert!(!report.ok);
    assert_eq!(report.first_bad.as_ref().map(|b| b.0), Some(lost.seq));
    assert_eq!(report.open_intents.len(), 1);
    assert!(report.to_string().contains("intent without an outcome"), "{report}");
    // An operator looks, and records what happened.
    let err = audit::resolve(c, lost.seq, "ops.kim", " ", None, t0()).expect_err("needs a reason");
    assert!(err.to_string().contains("reason"));
    audit::resolve(c, lost.seq, "ops.kim", "approval took effect: execution SUCCEEDED", Some(json!({"status": "SUCCEEDED"})), t0())
        .expect("resolve");
    assert!(audit::verify(c).expect("verify").ok);
    assert!(audit::resolve(c, lost.seq, "ops.kim", "again", None, t0()).is_err(), "an intent is resolved once");
    // An outcome naming no open intent is itself a problem.
    let e = entry.clone();
    audit::finish(c, audit::Intent { seq: 1 }, &e, t0()).expect("append");
    assert!(!audit::verify(c).expect("verify").ok);
}

/// A reason code is stored apart from the note, covered by the hash (changing it is detected),
/// and a log written before reason codes existed (no `reason_code` column) still lists and
/// verifies, then takes rows with codes after its additive migration.
#[test]
fn reason_codes_are_their_own_column_hashed_and_old_logs_stay_readable() {
    let codes = lightbox::phi::ReasonCodes::default();
    let why = lightbox::phi::Reason::new(&codes, "quality-review", "peer review of the discrepancy on ACC-1").expect("reason");
    let store = store_with(2);
    let entry = AuditEntry::new("dr.lee", Source::Cli, Action::RevealPhi).why(&why);
    let rec = audit::record(store.conn(), &entry, t0() + Duration::seconds(10)).expect("record");
    assert_eq!(
        (rec.reason_code.as_deref(), rec.reason.as_deref()),
        (Some("quality-review"), Some("peer review of the discrepancy on ACC-1"))
    );
    assert_eq!(rec.to_json()["reasonCode"], "quality-review");
    assert!(rec.to_string().contains("reason: [quality-review] peer review"), "{rec}");
    // A reason carried as text (`[code] note` after a prefix) is split the same way.
    let carried = AuditEntry::new("ops", Source::Cli, Action::Other("dependency-hold".into())).reason(format!("dependency pacs: {why}"));
    let rec = audit::record(store.conn(), &carried, t0() + Duration::seconds(11)).expect("record");
    assert_eq!(rec.reason_code.as_deref(), Some("quality-review"));
    assert_eq!(rec.reason.as_deref(), Some("dependency pacs: peer review of the discrepancy on ACC-1"));
    assert!(audit::verify(store.conn()).expect("verify").ok);
    tamper(store.conn(), "UPDATE audit_log SET reason_code = 'direct-care' WHERE seq = 3");
    assert_eq!(bad_seq(&store), Some(3), "the code is covered by the row's hash");

    // A log from before reason codes: the column is not there.
    let old = Store::in_memory().expect("store");
    audit::ensure_schema(old.conn()).expect("schema");
    for i in 0..3 {
        audit::record(old.conn(), &full_entry(i), t0() + Duration::seconds(i as i64)).expect("record");
    }
    tamper(old.conn(), "ALTER TABLE audit_log DROP COLUMN reason_code");
    let rows = audit::list(old.conn(), &AuditFilter { limit: 10, ..Default::default() }).expect("list");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.reason_code.is_none()));
    assert!(audit::verify(old.conn()).expect("verify").ok, "old rows hash as before");
    audit::record(old.conn(), &AuditEntry::new("dr.lee", Source::Cli, Action::RevealPhi).why(&why), t0() + Duration::seconds(5))
        .expect("record after the migration");
    let rows = audit::list(old.conn(), &AuditFilter { limit: 10, ..Default::default() }).expect("list");
    assert_eq!(rows[0].reason_code.as_deref(), Some("quality-review"));
    assert!(audit::verify(old.conn()).expect("verify").ok);
}
