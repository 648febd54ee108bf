//! [`Condition`]: event filters with field predicates and AND / OR / NOT (AG2's
//! `E.field == x`, `A & B`, `A | B`, `~A`).
//!
//! An [`EventFilter`] is a set of kinds, which the bus matches cheaply. A condition adds
//! predicates on the events' contents. It still knows which kinds it can match
//! ([`Condition::kinds`]), so the bus only delivers those, and the predicate runs on the
//! subscriber's side.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::events::{Event, EventKind, LiveEvent};
use crate::filter::EventFilter;

type Predicate = Arc<dyn Fn(&LiveEvent) -> bool + Send + Sync>;

#[derive(Clone)]
enum Node {
    Kinds(EventFilter),
    Test(EventFilter, Predicate, Arc<str>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

/// Which events an observer or stream wants: kinds, field tests, and their combinations.
///
/// ```
/// use liveagent_core::{Condition, ErrorEvent, LiveError, ToolResult, LiveEvent, EventKind};
///
/// // AG2: `ToolResult.name == "book" | ErrorEvent`
/// let c = Condition::field::<ToolResult>("name", "book") | Condition::of::<ErrorEvent>();
/// let book = LiveEvent::from(ToolResult {
///     call_id: "c1".into(), name: "book".into(), output: Ok(1.into()), request_response: true,
/// });
/// assert!(c.matches(&book));
/// assert!(c.kinds().contains(EventKind::ErrorEvent));
///
/// // AG2: `ToolResult & ~(ToolResult.name == "book")`, with a closure test
/// let others = Condition::of::<ToolResult>() & !Condition::when(|r: &ToolResult| &*r.name == "book");
/// assert!(!others.matches(&book));
/// ```
#[derive(Clone)]
pub struct Condition(Node);

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn show(n: &Node, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match n {
                Node::Kinds(k) => write!(f, "{k:?}"),
                Node::Test(_, _, label) => write!(f, "{label}"),
                Node::And(a, b) => {
                    write!(f, "(")?;
                    show(a, f)?;
                    write!(f, " & ")?;
                    show(b, f)?;
                    write!(f, ")")
                }
                Node::Or(a, b) => {
                    write!(f, "(")?;
                    show(a, f)?;
                    write!(f, " | ")?;
                    show(b, f)?;
                    write!(f, ")")
                }
                Node::Not(a) => {
                    write!(f, "!")?;
                    show(a, f)
                }
            }
        }
        show(&self.0, f)
    }
}

impl Condition {
    /// Every event of type `E`.
    pub fn of<E: Event>() -> Self {
        Condition(Node::Kinds(EventFilter::of::<E>()))
    }

    /// Every event whose kind is in `filter`.
    pub fn kinds_in(filter: EventFilter) -> Self {
        Condition(Node::Kinds(filter))
    }

    /// Every event.
    pub fn any() -> Self {
        Condition::kinds_in(EventFilter::all())
    }

    /// Events of type `E` for which `test` is true.
    pub fn when<E, F>(test: F) -> Self
    where
        E: Event,
        F: Fn(&E) -> bool + Send + Sync + 'static,
    {
        Condition(Node::Test(
            EventFilter::of::<E>(),
            Arc::new(move |event| E::from_event_ref(event).is_some_and(&test)),
            format!(
                "{}(<closure>)",
                std::any::type_name::<E>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("?")
            )
            .into(),
        ))
    }

    /// Events of type `E` whose field `field` (as serialized; nested fields with dots,
    /// `"error.kind"`) equals `value` (AG2 `E.field == value`).
    pub fn field<E: Event>(field: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        let path: Vec<String> = field.split('.').map(str::to_owned).collect();
        let label = format!(
            "{}.{field} == {value}",
            std::any::type_name::<E>()
                .rsplit("::")
                .next()
                .unwrap_or("?")
        );
        Condition(Node::Test(
            EventFilter::of::<E>(),
            Arc::new(move |event| {
                let Some(e) = E::from_event_ref(event) else {
                    return false;
                };
                // Events are serialized only when a field test needs it.
                let Ok(json) = serde_json::to_value(e.clone().into_event()) else {
                    return false;
                };
                let mut at = &json;
                for key in &path {
                    match at.get(key) {
                        Some(v) => at = v,
                        None => return false,
                    }
                }
                *at == value
            }),
            label.into(),
        ))
    }

    /// Both conditions (AG2 `A & B`).
    pub fn and(self, other: Condition) -> Self {
        Condition(Node::And(Box::new(self.0), Box::new(other.0)))
    }

    /// Either condition (AG2 `A | B`).
    pub fn or(self, other: Condition) -> Self {
        Condition(Node::Or(Box::new(self.0), Box::new(other.0)))
    }

    /// The opposite (AG2 `~A`): every event the condition does not match.
    pub fn negate(self) -> Self {
        Condition(Node::Not(Box::new(self.0)))
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &LiveEvent) -> bool {
        fn eval(n: &Node, e: &LiveEvent) -> bool {
            match n {
                Node::Kinds(k) => k.matches(e),
                Node::Test(k, p, _) => k.matches(e) && p(e),
                Node::And(a, b) => eval(a, e) && eval(b, e),
                Node::Or(a, b) => eval(a, e) || eval(b, e),
                Node::Not(a) => !eval(a, e),
            }
        }
        eval(&self.0, event)
    }

    /// The kinds this condition can match: what the bus must deliver for it.
    pub fn kinds(&self) -> EventFilter {
        fn kinds(n: &Node) -> EventFilter {
            match n {
                Node::Kinds(k) => *k,
                Node::Test(k, _, _) => *k,
                Node::And(a, b) => EventFilter::kinds(
                    EventKind::ALL
                        .iter()
                        .copied()
                        .filter(|x| kinds(a).contains(*x) && kinds(b).contains(*x)),
                ),
                Node::Or(a, b) => kinds(a) | kinds(b),
                Node::Not(a) => match &**a {
                    // `!kinds` can never match those kinds; `!test` may match any kind.
                    Node::Kinds(k) => EventFilter::kinds(
                        EventKind::ALL.iter().copied().filter(|x| !k.contains(*x)),
                    ),
                    _ => EventFilter::all(),
                },
            }
        }
        kinds(&self.0)
    }

    /// True when the condition is only a set of kinds (no predicate to run).
    pub fn is_kinds_only(&self) -> bool {
        matches!(self.0, Node::Kinds(_))
    }
}

impl From<EventFilter> for Condition {
    fn from(filter: EventFilter) -> Self {
        Condition::kinds_in(filter)
    }
}

impl std::ops::BitAnd for Condition {
    type Output = Condition;
    fn bitand(self, rhs: Condition) -> Condition {
        self.and(rhs)
    }
}

impl std::ops::BitOr for Condition {
    type Output = Condition;
    fn bitor(self, rhs: Condition) -> Condition {
        self.or(rhs)
    }
}

impl std::ops::Not for Condition {
    type Output = Condition;
    fn not(self) -> Condition {
        self.negate()
    }
}
