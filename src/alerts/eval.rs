//! Pure rule evaluation: does a rule's match hold for an event? No I/O, no
//! allocation on the hot path. [`RuleSet`] indexes rules by exact `_type` so
//! that each event is checked only against rules that could match it.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use super::event::AlertEvent;
use super::rules::Rule;

/// `object` values a rule may name.
pub const OBJECTS: &[&str] = &["entity", "relationship", "system"];

/// `action` values a rule may name.
pub const ACTIONS: &[&str] = &[
    "created",
    "updated",
    "deleted",
    super::event::SYNC_FAILED,
    super::event::SYNC_PARTIAL,
    super::event::CONNECTION_TEST_FAILED,
    super::event::CONNECTION_TEST_RECOVERED,
];

/// A set of names from a fixed list, as bits; empty means "any".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameSet(u32);

impl NameSet {
    pub fn insert(&mut self, index: usize) {
        self.0 |= 1 << index;
    }

    fn allows(self, names: &[&str], name: &str) -> bool {
        self.0 == 0
            || names
                .iter()
                .position(|n| *n == name)
                .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// A `_type`, `_class` or `_key` pattern; `*` matches any run of characters.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Glob(Regex),
}

impl Pattern {
    /// `circleci_user`, `circleci_*`, `*_environment_variable`, `a*b*c`.
    pub fn parse(text: &str) -> Pattern {
        let stars = text.matches('*').count();
        if stars == 0 {
            return Pattern::Exact(text.to_owned());
        }
        if stars == 1 {
            if let Some(prefix) = text.strip_suffix('*') {
                return Pattern::Prefix(prefix.to_owned());
            }
            if let Some(suffix) = text.strip_prefix('*') {
                return Pattern::Suffix(suffix.to_owned());
            }
        }
        let parts: Vec<String> = text.split('*').map(regex::escape).collect();
        match Regex::new(&format!("^{}$", parts.join(".*"))) {
            Ok(re) => Pattern::Glob(re),
            // Escaped literals joined by `.*` always compile; keep a safe
            // fallback rather than a panic.
            Err(_) => Pattern::Exact(text.to_owned()),
        }
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == s,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
            Pattern::Suffix(p) => s.ends_with(p.as_str()),
            Pattern::Glob(re) => re.is_match(s),
        }
    }

    fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(p) => Some(p),
            _ => None,
        }
    }
}

/// Where a predicate's field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    After,
    Before,
    Changes,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::After => "after",
            Scope::Before => "before",
            Scope::Changes => "changes",
        }
    }
}

/// One operator of a predicate.
#[derive(Debug, Clone)]
pub enum Test {
    /// The value equals this one (numbers by value; a string equals a
    /// number or boolean written the same way).
    Equals(Value),
    /// The value equals one of these.
    In(Vec<Value>),
    /// The value (a string, number or boolean as text) matches.
    Regex(Regex),
    /// The field is present and not null (`changes.X`: X changed).
    Exists(bool),
    /// `changes.X` only: the old value is one of these.
    From(Vec<Value>),
    /// `changes.X` only: the new value is one of these.
    To(Vec<Value>),
}

/// A field of `after`, `before` or `changes` and the tests it must pass.
/// Property names are flat (`tag.AccountName` is one name), so the field is
/// looked up as a whole.
#[derive(Debug, Clone)]
pub struct Predicate {
    pub scope: Scope,
    pub field: String,
    pub tests: Vec<Test>,
}

/// The `match` of a rule: every part given must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub objects: NameSet,
    pub actions: NameSet,
    pub types: Vec<Pattern>,
    pub classes: Vec<Pattern>,
    pub keys: Vec<Pattern>,
    pub predicates: Vec<Predicate>,
}

fn any_pattern(patterns: &[Pattern], s: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(s))
}

impl Matcher {
    /// Whether the event passes every part of the match.
    pub fn matches(&self, event: &AlertEvent) -> bool {
        self.objects.allows(OBJECTS, event.object())
            && self.actions.allows(ACTIONS, event.action())
            && any_pattern(&self.types, event.ty())
            && any_pattern(&self.classes, event.class())
            && any_pattern(&self.keys, event.key())
            && self.predicates.iter().all(|p| p.holds(event))
    }

    /// The `_type`s this match is limited to, if all are exact.
    fn exact_types(&self) -> Option<Vec<&str>> {
        if self.types.is_empty() {
            return None;
        }
        self.types.iter().map(Pattern::exact).collect()
    }
}

impl Predicate {
    pub fn holds(&self, event: &AlertEvent) -> bool {
        match self.scope {
            Scope::After | Scope::Before => {
                let object = if self.scope == Scope::After {
                    event.after()
                } else {
                    event.before()
                };
                let value = object
                    .and_then(Value::as_object)
                    .and_then(|o| o.get(&self.field))
                    .filter(|v| !v.is_null());
                self.tests.iter().all(|t| value_test(t, value))
            }
            Scope::Changes => {
                let change = event.changes().and_then(|c| c.get(&self.field));
                self.tests.iter().all(|t| match (t, change) {
                    (Test::Exists(want), c) => c.is_some() == *want,
                    (_, None) => false,
                    (Test::From(any), Some(c)) => any.iter().any(|v| loose_eq(&c.old, v)),
                    (Test::To(any), Some(c)) => any.iter().any(|v| loose_eq(&c.new, v)),
                    // Refused at load: equals, in and regex on changes.
                    (Test::Equals(_) | Test::In(_) | Test::Regex(_), Some(_)) => false,
                })
            }
        }
    }
}

fn value_test(test: &Test, value: Option<&Value>) -> bool {
    match (test, value) {
        (Test::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (Test::Equals(want), Some(v)) => loose_eq(v, want),
        (Test::In(any), Some(v)) => any.iter().any(|w| loose_eq(v, w)),
        (Test::Regex(re), Some(v)) => match v {
            Value::String(s) => re.is_match(s),
            Value::Number(n) => re.is_match(&n.to_string()),
            Value::Bool(b) => re.is_match(if *b { "true" } else { "false" }),
            Value::Array(items) => items
                .iter()
                .any(|i| i.as_str().is_some_and(|s| re.is_match(s))),
            _ => false,
        },
        // Refused at load: from and to outside changes.
        (Test::From(_) | Test::To(_), Some(_)) => false,
    }
}

/// Equality that forgives YAML's typing: numbers compare by value, and a
/// string equals a number or boolean that prints the same.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            *s == n.to_string()
        }
        (Value::String(s), Value::Bool(v)) | (Value::Bool(v), Value::String(s)) => {
            s == if *v { "true" } else { "false" }
        }
        _ => a == b,
    }
}

/// Rules indexed for evaluation: by exact `_type` where a rule names only
/// exact types, plus the rest, which are checked against every event.
#[derive(Debug, Clone, Default)]
pub struct RuleSet<'a> {
    rules: Vec<&'a Rule>,
    by_type: HashMap<&'a str, Vec<u32>>,
    always: Vec<u32>,
}

impl<'a> RuleSet<'a> {
    pub fn new(rules: impl IntoIterator<Item = &'a Rule>) -> RuleSet<'a> {
        let mut set = RuleSet::default();
        for (i, rule) in rules.into_iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match rule.matcher.exact_types() {
                Some(types) => {
                    for ty in types {
                        let rules = set.by_type.entry(ty).or_default();
                        // A type named twice indexes the rule once.
                        if rules.last() != Some(&i) {
                            rules.push(i);
                        }
                    }
                }
                None => set.always.push(i),
            }
            set.rules.push(rule);
        }
        set
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Appends the rules matching `event` to `out`, in rule order.
    pub fn matching_into(&self, event: &AlertEvent, out: &mut Vec<&'a Rule>) {
        let typed = self
            .by_type
            .get(event.ty())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Merge the two ascending index lists so the order is the rules' order.
        let (mut i, mut j) = (0, 0);
        while i < typed.len() || j < self.always.len() {
            let next = match (typed.get(i), self.always.get(j)) {
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    a
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (None, None) => break,
            };
            if let Some(rule) = self.rules.get(next as usize)
                && rule.matches(event)
            {
                out.push(rule);
            }
        }
    }

    /// The rules matching `event`, in rule order.
    pub fn matching(&self, event: &AlertEvent) -> Vec<&'a Rule> {
        let mut out = Vec::new();
        self.matching_into(event, &mut out);
        out
    }
}
