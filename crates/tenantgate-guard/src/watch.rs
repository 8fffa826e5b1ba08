//! Partial matches of a text that arrives in pieces (a streamed output channel).
//!
//! A stream must not release text that could still turn out to be part of a match whose action
//! rewrites or stops the output, yet holding a fixed window delays every token. [`Watch`]
//! answers, after each piece, from which offset a match could still be in progress: the
//! earliest start of a suffix that is a prefix of some possible match. It keeps one anchored
//! automaton walk per start position that is still alive (most die at the next byte), merged
//! when two walks of one automaton reach the same state (the earlier start then stands for
//! both), so feeding costs O(new bytes x live walks) and nothing is rescanned.
//!
//! Exactness: each walk runs on an automaton whose language contains every match of the
//! detector. Literal patterns use the scanner's own automaton (ASCII case-insensitive like the
//! scan; word boundaries of names are ignored, which only holds more). Regex detectors use DFAs
//! of their patterns without `\b`, so they accept more than the scan does; the one boundary
//! kept is a cheap start filter: a pattern led by `\b` and a word character cannot start right
//! after an ASCII letter, digit or `_`, which are word characters for the scan's Unicode `\b`
//! too.

use crate::{Action, Policy, Scanner};
use aho_corasick::automaton::Automaton as _;
use aho_corasick::Anchored as AcAnchored;
use regex_automata::dfa::{dense, Automaton as _, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::{Anchored, MatchKind};
use std::sync::LazyLock;

/// Text a detector that only records findings (flag) keeps for its scan: a partial match
/// older than this is given up (it would be re-scanned with every piece). Matches that hold
/// text back are bounded by the caller's held-bytes limit instead.
pub const MAX_SCAN_TAIL: usize = 4096;

/// Secret patterns led by `\b` and a word character, without the boundaries.
const SECRETS_WORD: &[&str] = &[
    r"sk-ant-[A-Za-z0-9_-]{20,}",
    r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
    r"AKIA[0-9A-Z]{16}",
    r"gh[pousr]_[A-Za-z0-9]{36,}",
    r"xox[baprs]-[A-Za-z0-9-]{10,}",
    r"tgk_[A-Za-z0-9_-]{43}",
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
];
const SECRETS_ANY: &[&str] = &[r"-----BEGIN [A-Z ]*PRIVATE KEY-----"];
/// Cards and IBANs (`\b` then a digit or letter).
const PII_WORD: &[&str] = &[
    r"(?:\d[ -]?){12,18}\d",
    r"[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?",
];
/// E-mail addresses (their first character may be `.` or `-`, so no start filter) and phones.
const PII_ANY: &[&str] = &[
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    r"(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}",
];

struct Dfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

#[expect(
    clippy::expect_used,
    reason = "constant patterns, checked by the tests"
)]
fn dfa(patterns: &[&str]) -> Dfa {
    // `All`: a state stays alive while any pattern can still extend the text, not only the
    // leftmost-first one.
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .match_kind(MatchKind::All),
        )
        .build_many(patterns)
        .expect("valid partial-match patterns");
    let start = dfa
        .start_state(&regex_automata::util::start::Config::new().anchored(Anchored::Yes))
        .expect("an anchored start state");
    Dfa { dfa, start }
}

struct Dfas {
    secrets_word: Dfa,
    secrets_any: Dfa,
    pii_word: Dfa,
    pii_any: Dfa,
}

/// Built once per process: the patterns are constant.
static DFAS: LazyLock<Dfas> = LazyLock::new(|| Dfas {
    secrets_word: dfa(SECRETS_WORD),
    secrets_any: dfa(SECRETS_ANY),
    pii_word: dfa(PII_WORD),
    pii_any: dfa(PII_ANY),
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Machine {
    /// Every tenant's identifiers and canaries (the scanner's automaton).
    Literal,
    SecretsWord,
    SecretsAny,
    PiiWord,
    PiiAny,
}

impl Machine {
    /// Led by `\b` and a word character: no start right after an ASCII word character.
    fn word_led(self) -> bool {
        match self {
            Machine::SecretsWord | Machine::PiiWord => true,
            Machine::Literal | Machine::SecretsAny | Machine::PiiAny => false,
        }
    }

    fn dfa(self) -> Option<&'static Dfa> {
        let d = &*DFAS;
        match self {
            Machine::Literal => None,
            Machine::SecretsWord => Some(&d.secrets_word),
            Machine::SecretsAny => Some(&d.secrets_any),
            Machine::PiiWord => Some(&d.pii_word),
            Machine::PiiAny => Some(&d.pii_any),
        }
    }
}

/// Whether a finding with this action changes what the client receives, so the text must be
/// held until it is known not to be one.
fn changes_text(a: Action) -> bool {
    match a {
        Action::Block | Action::Redact => true,
        Action::Flag | Action::Off => false,
    }
}

#[derive(Debug, Clone, Copy)]
struct Walk {
    /// Index into `Watch::machines`.
    machine: u8,
    state: u32,
    start: usize,
}

/// The partial matches of one channel's text, in absolute byte offsets of that text.
pub struct Watch {
    /// The automata this policy needs, and whether their matches hold text back.
    machines: Vec<(Machine, bool)>,
    walks: Vec<Walk>,
    /// Offset of the next byte.
    end: usize,
    /// The last byte was an ASCII word character.
    after_word: bool,
}

impl Scanner {
    /// A watch over outbound text for a tenant with this policy: a detector that is off is not
    /// watched; one that only flags is watched for scanning but holds nothing back.
    pub fn watch(&self, policy: &Policy) -> Watch {
        let mut machines = Vec::new();
        let (ct, canary) = (policy.cross_tenant, policy.canary);
        if self.tenants.is_some() && (ct != Action::Off || canary != Action::Off) {
            machines.push((Machine::Literal, changes_text(ct) || changes_text(canary)));
        }
        if policy.secrets != Action::Off {
            let hold = changes_text(policy.secrets);
            machines.push((Machine::SecretsWord, hold));
            machines.push((Machine::SecretsAny, hold));
        }
        if policy.pii != Action::Off {
            let hold = changes_text(policy.pii);
            machines.push((Machine::PiiWord, hold));
            machines.push((Machine::PiiAny, hold));
        }
        Watch {
            machines,
            walks: Vec::new(),
            end: 0,
            after_word: false,
        }
    }

    fn walk_start(&self, m: Machine) -> Option<u32> {
        match m.dfa() {
            Some(d) => Some(d.start.as_u32()),
            None => self
                .tenants
                .as_ref()
                .and_then(|ac| ac.start_state(AcAnchored::Yes).ok())
                .map(|s| s.as_u32()),
        }
    }

    /// The next state of a walk, or `None` once it is dead.
    fn walk_next(&self, m: Machine, state: u32, byte: u8) -> Option<u32> {
        match m.dfa() {
            Some(d) => {
                let s = StateID::new(state as usize).ok()?;
                let next = d.dfa.next_state(s, byte);
                (!d.dfa.is_dead_state(next) && !d.dfa.is_quit_state(next)).then(|| next.as_u32())
            }
            None => {
                let ac = self.tenants.as_ref()?;
                let s = aho_corasick::automaton::StateID::new(state as usize).ok()?;
                let next = ac.next_state(AcAnchored::Yes, s, byte);
                (!ac.is_dead(next)).then(|| next.as_u32())
            }
        }
    }
}

impl Watch {
    /// Feeds the next piece of the channel's text; `scanner` must be the one that made it.
    pub fn feed(&mut self, scanner: &Scanner, text: &str) {
        for &b in text.as_bytes() {
            // Patterns are UTF-8 strings: a match starts only where a character does.
            if b & 0xC0 != 0x80 {
                for (i, (m, _)) in self.machines.iter().enumerate() {
                    if m.word_led() && self.after_word {
                        continue;
                    }
                    if let Some(state) = scanner.walk_start(*m) {
                        self.walks.push(Walk {
                            machine: i as u8,
                            state,
                            start: self.end,
                        });
                    }
                }
            }
            let machines = &self.machines;
            self.walks.retain_mut(|w| {
                match scanner.walk_next(machines[usize::from(w.machine)].0, w.state, b) {
                    Some(s) => {
                        w.state = s;
                        true
                    }
                    None => false,
                }
            });
            self.merge();
            self.after_word = b.is_ascii_alphanumeric() || b == b'_';
            self.end += 1;
        }
        self.give_up_old_flag_walks();
    }

    /// Two walks of one DFA in one state behave the same from here on: keep the earlier start.
    /// (Walks in the literal trie never meet: a trie state fixes its depth.)
    fn merge(&mut self) {
        let mut i = 0;
        while i < self.walks.len() {
            let w = self.walks[i];
            let dup = self.machines[usize::from(w.machine)].0 != Machine::Literal
                && self.walks[..i]
                    .iter()
                    .any(|x| x.machine == w.machine && x.state == w.state);
            if dup {
                self.walks.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn give_up_old_flag_walks(&mut self) {
        let end = self.end;
        let machines = &self.machines;
        self.walks
            .retain(|w| machines[usize::from(w.machine)].1 || end - w.start <= MAX_SCAN_TAIL);
    }

    /// The earliest offset from which the text could still belong to a match that would block
    /// or be redacted: text before it may be released. `None`: none in progress.
    pub fn hold_from(&self) -> Option<usize> {
        self.walks
            .iter()
            .filter(|w| self.machines[usize::from(w.machine)].1)
            .map(|w| w.start)
            .min()
    }

    /// The earliest offset from which the text could still belong to any watched match: the
    /// next scan must start there to see it whole.
    pub fn scan_from(&self) -> Option<usize> {
        self.walks.iter().map(|w| w.start).min()
    }

    /// Offset just past the text fed so far.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Forgets every walk and continues as if the text began at `at` (after the caller
    /// rewrote it, e.g. a redaction).
    pub fn restart(&mut self, at: usize) {
        self.walks.clear();
        self.end = at;
        self.after_word = false;
    }
}
