//! The split driver across processes: the real `mx-backend` binary and
//! several guest processes (this test binary re-run in a role, see
//! `common/`), exchanging tiny, small and medium messages of every size
//! class boundary with every byte checked, next to a hostile guest and a
//! guest killed with SIGKILL.

mod common;

use common::{field, find_line, BackendProc, GuestProc, Ready, EP_ENV, HOSTILE_MS_ENV};
use frontend::{Frontend, FrontendError};
use mx_proto::msg::control::{ChannelSizes, ControlError, COUNTER_LABELS};
use mx_proto::platform::local::{LocalGuest, LocalTarget};
use std::time::Duration;

/// How long a guest may take to finish once told to.
const FINISH: Duration = Duration::from_secs(30);

fn counter(v: &[u64], label: &str) -> u64 {
    let i = COUNTER_LABELS
        .iter()
        .position(|l| *l == label)
        .unwrap_or_else(|| panic!("no counter {label:?}"));
    v[i]
}

/// `recv=<tag>:<n>,...` of an `MXDONE` line, as the count of `tag`.
fn done_count(fields: &[String], key: &str, tag: u32) -> u64 {
    let list = field(fields, key).unwrap_or_else(|| panic!("no {key} in {fields:?}"));
    list.split(',')
        .filter(|s| !s.is_empty())
        .find_map(|s| {
            let (t, n) = s.split_once(':')?;
            (t.parse::<u32>().ok()? == tag).then(|| n.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no stream {tag} in {fields:?}"))
}

fn node(name: &str, be: &BackendProc) -> (GuestProc, Ready) {
    let mut g = GuestProc::spawn(name, "node", be.socket(), &[]);
    let r = Ready::of(&mut g);
    (g, r)
}

/// Two senders into one receiver and a pair streaming both ways at the
/// same time, five guest processes, every size class boundary (0, 1, 32,
/// 33, 128, 129, frag - 1, frag, frag + 1, max medium), every byte checked
/// in order per sender.
#[test]
fn many_to_one_and_a_pair_both_ways() {
    const N: u64 = 40; // 4 rounds of the 10 sizes per stream
    let mut be = BackendProc::start(common::RAW_PAIR_ARGS);
    let (mut r, rr) = node("receiver", &be);
    let (mut s1, r1) = node("sender1", &be);
    let (mut s2, r2) = node("sender2", &be);
    let (mut p, rp) = node("pair-p", &be);
    let (mut q, rq) = node("pair-q", &be);
    let mut eps = vec![rr.ep, r1.ep, r2.ep, rp.ep, rq.ep];
    eps.sort();
    eps.dedup();
    assert_eq!(eps.len(), 5, "endpoint ids must be distinct");

    // Receivers first, so no message arrives before it is expected.
    r.cmd(&format!("recv {} 1 {N} all", r1.ep));
    r.cmd(&format!("recv {} 2 {N} all", r2.ep));
    p.cmd(&format!("recv {} 4 {N} all", rq.ep));
    q.cmd(&format!("recv {} 3 {N} all", rp.ep));
    s1.cmd(&format!("send {} {} 1 {N} all", rr.ep, rr.session));
    s2.cmd(&format!("send {} {} 2 {N} all", rr.ep, rr.session));
    p.cmd(&format!("send {} {} 3 {N} all", rq.ep, rq.session));
    q.cmd(&format!("send {} {} 4 {N} all", rp.ep, rp.session));
    // Receivers finish first: a sender that exits may take its last
    // unprocessed commands with it.
    r.cmd("finish");
    let done_r = find_line(&r.wait_ok(FINISH), "MXDONE");
    for g in [&mut s1, &mut s2, &mut p, &mut q] {
        g.cmd("finish");
    }
    assert_eq!(done_count(&done_r, "recv", 1), N);
    assert_eq!(done_count(&done_r, "recv", 2), N);
    for (g, tag) in [(&mut s1, 1), (&mut s2, 2)] {
        let d = find_line(&g.wait_ok(FINISH), "MXDONE");
        assert_eq!(done_count(&d, "sent", tag), N);
        assert_eq!(field(&d, "errors"), Some("0"), "{d:?}");
        assert_eq!(field(&d, "nacks"), Some("0"), "{d:?}");
    }
    for (g, out, inn) in [(&mut p, 3, 4), (&mut q, 4, 3)] {
        let d = find_line(&g.wait_ok(FINISH), "MXDONE");
        assert_eq!(done_count(&d, "sent", out), N);
        assert_eq!(done_count(&d, "recv", inn), N);
        assert_eq!(field(&d, "errors"), Some("0"), "{d:?}");
    }
    assert!(be.alive(), "backend died: {}", be.log());
}

/// A hostile guest writes random bytes all over its channel and posts
/// wrong and garbage commands while two honest guests stream: the backend
/// survives, counts the errors, closes the hostile endpoints when their
/// rings break, and the honest stream is complete and byte-exact.
#[test]
fn hostile_guest_hurts_only_itself() {
    let mut be = BackendProc::start(common::RAW_PAIR_ARGS);
    let (mut a, ra) = node("honest-a", &be);
    let (mut b, rb) = node("honest-b", &be);
    b.cmd(&format!("recv {} 5 inf all", ra.ep));
    a.cmd(&format!("send {} {} 5 inf all", rb.ep, rb.session));
    // Let the honest stream get going before the trouble starts.
    b.expect_where("MXRECV", |f| f[0] == "5");

    let mut h = GuestProc::spawn(
        "hostile",
        "hostile",
        be.socket(),
        &[(HOSTILE_MS_ENV, "2400".into())],
    );
    let hf = h.expect("MXREADY");
    let (h_a, h_b): (u8, u8) = (hf[0].parse().unwrap(), hf[2].parse().unwrap());
    let seed = hf[4].clone();
    for tag in ["MXCOUNTERS1", "MXCOUNTERS2"] {
        let c: Vec<u64> = h.expect(tag).iter().map(|s| s.parse().unwrap()).collect();
        let ctx = format!("{tag} (seed {seed}): {c:?}");
        assert!(counter(&c, "cmds processed") > 0, "{ctx}");
        assert!(counter(&c, "cmds malformed") > 0, "{ctx}");
        assert!(counter(&c, "cmds bad slot or peer") > 0, "{ctx}");
        assert!(counter(&c, "nacks sent") > 0, "{ctx}");
        assert!(counter(&c, "events posted") > 0, "{ctx}");
    }
    let end = h.expect("MXHOSTILE");
    h.wait_ok(FINISH);
    a.cmd("stop 5");
    // The receiver finishes first: a sender that exits may take its last
    // unprocessed commands (here the end marker) with it.
    b.cmd("finish");
    let db = find_line(&b.wait_ok(FINISH), "MXDONE");
    a.cmd("finish");
    let da = find_line(&a.wait_ok(FINISH), "MXDONE");
    let sent = done_count(&da, "sent", 5);
    assert_eq!(done_count(&db, "recv", 5), sent);
    assert!(sent >= 32, "honest stream too short: {sent}");
    assert_eq!(field(&da, "errors"), Some("0"), "{da:?}");
    assert_eq!(field(&db, "errors"), Some("0"), "{db:?}");

    assert!(be.alive(), "backend died (seed {seed}): {}", be.log());
    // Broken rings get the hostile endpoints closed (the guest detached).
    assert_eq!(
        field(&end, "b_detached"),
        Some("true"),
        "event-ring corruption not detected (seed {seed}): {end:?}"
    );
    assert_eq!(
        field(&end, "a_detached"),
        Some("true"),
        "ring corruption not detected (seed {seed}): {end:?}"
    );
    let fe = Frontend::<LocalGuest>::attach(&LocalTarget::new(be.socket())).expect("attach");
    for ep in [h_a, h_b] {
        assert!(matches!(
            fe.counters(ep),
            Err(FrontendError::Refused(ControlError::BadEndpoint))
        ));
    }
    // The backend still serves: the freed ids can be opened again.
    let (e1, _) = fe
        .open_endpoint(u32::from(h_a), ChannelSizes::default())
        .unwrap();
    let (e2, _) = fe
        .open_endpoint(u32::from(h_b), ChannelSizes::default())
        .unwrap();
    assert_eq!((e1.id(), e2.id()), (h_a, h_b));
}

/// A guest killed with SIGKILL in the middle of a medium stream: its
/// endpoint closes (sends to it are NACKed ENDPT_CLOSED), another pair's
/// stream is untouched, and a new guest can open the freed endpoint id.
#[test]
fn sigkilled_guest_is_cleaned_up() {
    let mut be = BackendProc::start(common::RAW_PAIR_ARGS);
    let (mut k, rk) = node("victim-sender", &be);
    let (mut v, rv) = node("receiver-of-killed", &be);
    let (mut x, rx) = node("pair-x", &be);
    let (mut y, ry) = node("pair-y", &be);
    v.cmd(&format!("recv {} 6 inf medium", rk.ep));
    y.cmd(&format!("recv {} 7 inf all", rx.ep));
    k.cmd(&format!("send {} {} 6 inf medium", rv.ep, rv.session));
    x.cmd(&format!("send {} {} 7 inf all", ry.ep, ry.session));
    // Both streams under way, then the kill.
    v.expect_where("MXRECV", |f| {
        f[0] == "6" && f[1].parse::<u64>().unwrap() >= 32
    });
    y.expect_where("MXRECV", |f| f[0] == "7");
    k.kill9();
    v.cmd(&format!("killed {} {}", rk.ep, rk.session));
    v.expect_where("MXNACKED", |f| f[0] == rk.ep.to_string());

    // The freed endpoint id can be opened by a new guest, and works.
    let mut n = GuestProc::spawn(
        "newcomer",
        "node",
        be.socket(),
        &[(EP_ENV, rk.ep.to_string())],
    );
    let rn = Ready::of(&mut n);
    assert_eq!(rn.ep, rk.ep);
    n.cmd(&format!("recv {} 8 20 all", rv.ep));
    v.cmd(&format!("send {} {} 8 20 all", rn.ep, rn.session));

    y.expect_where("MXRECV", |f| f[0] == "7");
    x.cmd("stop 7");
    // Receivers finish first: a sender that exits may take its last
    // unprocessed commands (the end marker) with it.
    for g in [&mut y, &mut n] {
        g.cmd("finish");
    }
    let dy = find_line(&y.wait_ok(FINISH), "MXDONE");
    let dn = find_line(&n.wait_ok(FINISH), "MXDONE");
    for g in [&mut x, &mut v] {
        g.cmd("finish");
    }
    let dx = find_line(&x.wait_ok(FINISH), "MXDONE");
    let dv = find_line(&v.wait_ok(FINISH), "MXDONE");
    assert_eq!(done_count(&dy, "recv", 7), done_count(&dx, "sent", 7));
    assert_eq!(field(&dx, "errors"), Some("0"), "{dx:?}");
    assert!(done_count(&dv, "recv", 6) >= 32);
    assert_eq!(done_count(&dv, "sent", 8), 20);
    assert_eq!(done_count(&dn, "recv", 8), 20);
    assert!(be.alive(), "backend died: {}", be.log());
}

/// The guest roles; a no-op unless started by one of the tests above.
#[test]
fn guest_child() {
    let Ok(role) = std::env::var(common::ROLE_ENV) else {
        return;
    };
    let socket = std::path::PathBuf::from(std::env::var(common::SOCKET_ENV).unwrap());
    match role.as_str() {
        "node" => common::guest::run_node(&socket),
        "hostile" => common::hostile::run_hostile(&socket),
        other => panic!("unknown role {other}"),
    }
}
