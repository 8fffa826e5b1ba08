//! `Watch`: what a stream may release before the rest of its text arrives. Each detector
//! family's matches, split at every byte across two pieces, are still found by scans that
//! start only where the watch says a match may be in progress, and no byte of a match that
//! blocks or is redacted is ever releasable before the match is found; text that cannot start
//! a match is releasable at once.

#![allow(clippy::unwrap_used, reason = "test code")]

use tenantgate_core::TenantId;
use tenantgate_guard::{
    Action, Detector, Direction, Hit, Policy, Scanner, TenantIdentifiers, MAX_SCAN_TAIL,
};

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn scanner() -> Scanner {
    Scanner::new(
        vec![
            TenantIdentifiers {
                tenant: tid("a"),
                names: vec!["Acme Rockets".into(), "acme-rockets".into()],
                exact: vec!["0190-aaaa".into()],
            },
            TenantIdentifiers {
                tenant: tid("b"),
                names: vec!["Globex Corp".into()],
                exact: vec!["0190-bbbb".into()],
            },
        ],
        &[
            (tid("a"), "tgc_aaaa1111".into()),
            (tid("b"), "tgc_bbbb2222".into()),
        ],
    )
}

/// Streams `pieces` the way the gateway does: each piece is fed, then scanned from where the
/// previous step said a match could be in progress (a hit reaching the end may still grow, so
/// its start is kept too). Returns every hit (absolute positions) and, after each piece, the
/// offset below which text could have been released.
fn stream(s: &Scanner, me: &TenantId, policy: &Policy, pieces: &[&str]) -> (Vec<Hit>, Vec<usize>) {
    let mut w = s.watch(policy);
    let mut text = String::new();
    let mut scan = 0;
    let mut hits: Vec<Hit> = Vec::new();
    let mut released = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        text.push_str(p);
        w.feed(s, p);
        assert_eq!(w.end(), text.len());
        let found = s.scan_from(me, &text, scan, Direction::Outbound, policy);
        let growing = found
            .iter()
            .filter(|h| !last && h.end == text.len())
            .map(|h| h.start)
            .min();
        for h in found {
            // A hit that was still growing is found again, longer.
            match hits
                .iter_mut()
                .find(|x| x.start == h.start && x.detector == h.detector)
            {
                Some(x) => x.end = x.end.max(h.end),
                None => hits.push(h),
            }
        }
        scan = [w.scan_from(), growing]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(text.len());
        let hold = [w.hold_from(), growing].into_iter().flatten().min();
        released.push(hold.unwrap_or(text.len()));
    }
    (hits, released)
}

/// `needle` inside prose, split at every byte: found, and never releasable before found.
fn caught_at_every_split(s: &Scanner, me: &TenantId, policy: &Policy, needle: &str, d: Detector) {
    let text = format!("Sure. Here it is: {needle} and that is all.");
    let start = text.find(needle).unwrap();
    let end = start + needle.len();
    for p in 1..text.len() {
        if !text.is_char_boundary(p) {
            continue;
        }
        let (hits, released) = stream(s, me, policy, &[&text[..p], &text[p..]]);
        assert!(
            hits.iter()
                .any(|h| h.detector == d && h.start == start && h.end == end),
            "{needle:?} split at {p}: not found ({hits:?})"
        );
        if p > start && p < end && policy.action(d) != Action::Flag {
            assert!(
                released[0] <= start,
                "{needle:?} split at {p}: {} bytes releasable, the match starts at {start}",
                released[0]
            );
        }
    }
}

fn redact_all() -> Policy {
    Policy {
        pii: Action::Redact,
        ..Policy::default()
    }
}

#[test]
fn other_tenants_identifiers_and_canaries_split_anywhere_are_caught() {
    let s = scanner();
    let p = Policy::default();
    for needle in ["Globex Corp", "GLOBEX CORP", "0190-bbbb", "tgc_bbbb2222"] {
        caught_at_every_split(&s, &tid("a"), &p, needle, Detector::CrossTenant);
    }
    caught_at_every_split(&s, &tid("a"), &p, "tgc_aaaa1111", Detector::Canary);
}

#[test]
fn secrets_split_anywhere_are_caught() {
    let s = scanner();
    for needle in [
        "sk-proj-abcdefghijklmnopqrstuvwx",
        "sk-ant-api03-abcdefghijklmnopqrstu",
        "AKIAABCDEFGHIJKLMNOP",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abc",
        "-----BEGIN RSA PRIVATE KEY-----",
        "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2QT4",
        "tgk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    ] {
        caught_at_every_split(&s, &tid("a"), &Policy::default(), needle, Detector::Secrets);
    }
}

#[test]
fn pii_split_anywhere_is_caught_held_when_redacted_and_found_when_flagged() {
    let s = scanner();
    for needle in [
        "ann.lee@example.com",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "+1 415-555-0100",
        "(415) 555-0100",
    ] {
        caught_at_every_split(&s, &tid("a"), &redact_all(), needle, Detector::Pii);
        // Flagged (the default): nothing is held, yet the finding is made.
        caught_at_every_split(&s, &tid("a"), &Policy::default(), needle, Detector::Pii);
    }
}

#[test]
fn a_match_split_over_many_pieces_is_caught() {
    let s = scanner();
    let text = "ok then tgc_bbbb2222 and sk-proj-abcdefghijklmnopqrstuvwx done";
    let pieces: Vec<&str> = text
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let (hits, released) = stream(&s, &tid("a"), &Policy::default(), &pieces);
    let ds: Vec<Detector> = hits.iter().map(|h| h.detector).collect();
    assert_eq!(ds, [Detector::CrossTenant, Detector::Secrets]);
    let canary = text.find("tgc_").unwrap();
    // Up to the piece that completes the canary, nothing from its first byte on is releasable.
    for (i, r) in released.iter().enumerate() {
        if (i + 1) * 3 < canary + "tgc_bbbb2222".len() {
            assert!(*r <= canary, "piece {i}: {r}");
        }
    }
}

#[test]
fn text_that_cannot_start_a_match_is_released_at_once() {
    let s = scanner();
    let hold = |policy: &Policy, text: &str| {
        let mut w = s.watch(policy);
        w.feed(&s, text);
        w.hold_from()
    };
    let p = Policy::default();
    for text in [
        "Hello there, how are you today? ",
        "The weather is fine.",
        "this is",
        "numbers like 12 and 2024",
        "ann@example.com is flagged, not held",
        "Ünïcödé text ✓",
    ] {
        assert_eq!(hold(&p, text), None, "{text:?}");
    }
    // What could still begin a match that would be rewritten: only that suffix is held.
    assert_eq!(hold(&p, "the key is s"), Some(11), "sk-...");
    assert_eq!(hold(&p, "from Glo"), Some(5), "Globex Corp");
    assert_eq!(hold(&p, "marker tgc_bb"), Some(7));
    assert_eq!(hold(&p, "id 0190-"), Some(3));
    // A tenant that redacts PII holds the word in progress (a possible e-mail), no more.
    assert_eq!(hold(&redact_all(), "hello wor"), Some(6));
    assert_eq!(hold(&redact_all(), "hello world "), None);
    // A detector that is off is not watched.
    let off = Policy {
        secrets: Action::Off,
        ..Policy::default()
    };
    assert_eq!(hold(&off, "the key is s"), None);
}

#[test]
fn partial_matches_cost_no_rescan_and_flag_only_tails_are_bounded() {
    let s = scanner();
    // A long run that could be an e-mail's local part: flagged PII keeps a bounded scan tail.
    let mut w = s.watch(&Policy::default());
    let run = "q".repeat(3 * MAX_SCAN_TAIL);
    for c in run.as_bytes().chunks(7) {
        w.feed(&s, std::str::from_utf8(c).unwrap());
        let from = w.scan_from().unwrap_or(w.end());
        assert!(w.end() - from <= MAX_SCAN_TAIL + 7);
    }
    assert_eq!(w.hold_from(), None);
}
