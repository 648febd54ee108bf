//! [`EventFilter`]: which event kinds a subscriber or stream wants.

use crate::events::{Event, EventKind, LiveEvent};

/// A set of [`EventKind`]s.
///
/// ```
/// use liveagent_core::{EventFilter, ModelMessageChunk, InputTranscriptChunk, EventKind};
/// let f = EventFilter::of::<ModelMessageChunk>().or::<InputTranscriptChunk>();
/// assert!(f.contains(EventKind::ModelMessageChunk));
/// assert!(!f.contains(EventKind::SynthesizedAudio));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventFilter(u64);

impl EventFilter {
    /// No kinds.
    pub const NONE: EventFilter = EventFilter(0);

    /// Every kind.
    pub fn all() -> Self {
        EventFilter::kinds(EventKind::ALL.iter().copied())
    }

    /// Just the type `E`.
    pub fn of<E: Event>() -> Self {
        EventFilter(E::KIND.bit())
    }

    /// This set plus the type `E`.
    pub fn or<E: Event>(self) -> Self {
        EventFilter(self.0 | E::KIND.bit())
    }

    /// This set plus `kind`.
    pub fn with(self, kind: EventKind) -> Self {
        EventFilter(self.0 | kind.bit())
    }

    /// This set without `kind`.
    pub fn without(self, kind: EventKind) -> Self {
        EventFilter(self.0 & !kind.bit())
    }

    /// The set of the given kinds.
    pub fn kinds(kinds: impl IntoIterator<Item = EventKind>) -> Self {
        kinds.into_iter().fold(EventFilter::NONE, |f, k| f.with(k))
    }

    /// The union of two sets.
    pub fn union(self, other: EventFilter) -> Self {
        EventFilter(self.0 | other.0)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Whether `event`'s kind is in the set.
    pub fn matches(self, event: &LiveEvent) -> bool {
        self.contains(event.kind())
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for EventFilter {
    type Output = EventFilter;
    fn bitor(self, rhs: EventFilter) -> EventFilter {
        self.union(rhs)
    }
}

/// A set of event types named as a tuple, for
/// [`StreamBuilder::union`](crate::StreamBuilder::union): `(A, B)`, `(A, B, C)`...
pub trait EventSet {
    /// The filter of all the types in the tuple.
    fn filter() -> EventFilter;
}

macro_rules! event_set {
    ($($t:ident),+) => {
        impl<$($t: Event),+> EventSet for ($($t,)+) {
            fn filter() -> EventFilter {
                EventFilter::NONE $(.or::<$t>())+
            }
        }
    };
}

event_set!(A);
event_set!(A, B);
event_set!(A, B, C);
event_set!(A, B, C, D);
event_set!(A, B, C, D, E);
event_set!(A, B, C, D, E, F);
event_set!(A, B, C, D, E, F, G);
event_set!(A, B, C, D, E, F, G, H);
