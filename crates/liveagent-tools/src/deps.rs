//! [`Dependencies`]: typed values injected into tools, outside the model-visible schema.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A shared value and its type name.
type Entry = (Arc<dyn Any + Send + Sync>, &'static str);

/// A type map of shared values (a database pool, an HTTP client, the current user...)
/// that tools read through [`ToolContext::dep`](crate::ToolContext::dep). One value per type;
/// values are shared as `Arc<T>`. Cloning the map is cheap.
///
/// ```
/// use liveagent_tools::Dependencies;
/// struct Db { url: String }
///
/// let mut deps = Dependencies::new();
/// deps.insert(Db { url: "sqlite::memory:".into() });
/// assert_eq!(deps.get::<Db>().unwrap().url, "sqlite::memory:");
/// assert!(deps.get::<String>().is_none());
/// ```
#[derive(Clone, Default)]
pub struct Dependencies {
    map: Arc<HashMap<TypeId, Entry>>,
}

impl Dependencies {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the value of type `T`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.insert_arc(Arc::new(value))
    }

    /// Adds (or replaces) the value of type `T`, already shared.
    pub fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) -> &mut Self {
        Arc::make_mut(&mut self.map).insert(
            TypeId::of::<T>(),
            (
                value as Arc<dyn Any + Send + Sync>,
                std::any::type_name::<T>(),
            ),
        );
        self
    }

    /// This map plus `value` (builder style).
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// The value of type `T`, if there is one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let (value, _) = self.map.get(&TypeId::of::<T>())?;
        value.clone().downcast::<T>().ok()
    }

    /// True when a value of type `T` is present.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.map.contains_key(&TypeId::of::<T>())
    }

    /// Adds every value of `other` (replacing values of the same type).
    pub fn extend(&mut self, other: &Dependencies) {
        if other.map.is_empty() {
            return;
        }
        let map = Arc::make_mut(&mut self.map);
        for (k, v) in other.map.iter() {
            map.insert(*k, v.clone());
        }
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl fmt::Debug for Dependencies {
    // Only type names: the values may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.map.values().map(|(_, name)| *name))
            .finish()
    }
}
