//! [`Variables`]: typed, conversation-scoped values that tools read and write (AG2
//! `context.variables`).
//!
//! A conversation has one store, shared by every clone of its
//! [`ConversationContext`](crate::ConversationContext): the agent's variables, then the
//! run's, then whatever tools set. It lives as long as the conversation, so it survives
//! reconnects (the session actor restarts; the context does not). Values are JSON
//! (`serde_json::Value`) underneath; [`Var`] gives a name a type.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::LiveError;

/// A shared map of named JSON values. Cheap to clone; clones share the map.
///
/// ```
/// use liveagent_core::{Var, Variables};
///
/// const VISITS: Var<u32> = Var::new("visits");
/// let vars = Variables::new();
/// vars.set("user", "Ada").unwrap();
/// vars.put(&VISITS, 2).unwrap();
/// assert_eq!(vars.get::<String>("user").unwrap().as_deref(), Some("Ada"));
/// assert_eq!(vars.read(&VISITS).unwrap(), Some(2));
/// // The wrong type is an error that names the variable, not a panic:
/// assert!(vars.get::<u32>("user").unwrap_err().to_string().contains("user"));
/// ```
#[derive(Clone, Default)]
pub struct Variables {
    map: Arc<RwLock<BTreeMap<String, Value>>>,
}

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values may be personal data.
        f.debug_struct("Variables")
            .field("names", &self.names())
            .finish()
    }
}

impl Variables {
    /// An empty store.
    pub fn new() -> Self {
        Variables::default()
    }

    /// A store holding `values`.
    pub fn from_map(values: BTreeMap<String, Value>) -> Self {
        Variables {
            map: Arc::new(RwLock::new(values)),
        }
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Value>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Value>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `name` as a `T`: `Ok(None)` when unset, an error when it does not
    /// convert to `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, LiveError> {
        let Some(value) = self.get_json(name) else {
            return Ok(None);
        };
        serde_json::from_value(value).map(Some).map_err(|e| {
            LiveError::config(format!(
                "variable `{name}` is not a {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The raw JSON value of `name`.
    pub fn get_json(&self, name: &str) -> Option<Value> {
        self.read_map().get(name).cloned()
    }

    /// Sets `name` to `value`; returns the previous value.
    pub fn set(
        &self,
        name: impl Into<String>,
        value: impl Serialize,
    ) -> Result<Option<Value>, LiveError> {
        let name = name.into();
        let value = serde_json::to_value(value)
            .map_err(|e| LiveError::config(format!("variable `{name}` cannot be stored: {e}")))?;
        Ok(self.write_map().insert(name, value))
    }

    /// Removes `name`; returns its value.
    pub fn remove(&self, name: &str) -> Option<Value> {
        self.write_map().remove(name)
    }

    /// Changes `name` in place under the lock (read-modify-write without a race between two
    /// tools): `f` gets the current value (`None` when unset) and returns the new one.
    pub fn update<T, F>(&self, name: &str, f: F) -> Result<T, LiveError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Option<T>) -> T,
    {
        let mut map = self.write_map();
        let current = match map.get(name) {
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                LiveError::config(format!(
                    "variable `{name}` is not a {}: {e}",
                    std::any::type_name::<T>()
                ))
            })?),
            None => None,
        };
        let next = f(current);
        let value = serde_json::to_value(&next)
            .map_err(|e| LiveError::config(format!("variable `{name}` cannot be stored: {e}")))?;
        map.insert(name.to_owned(), value);
        Ok(next)
    }

    /// Whether `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.read_map().contains_key(name)
    }

    /// The names set, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read_map().keys().cloned().collect()
    }

    /// A copy of every value.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        self.read_map().clone()
    }

    /// Sets every value of `values` (later wins).
    pub fn extend(&self, values: impl IntoIterator<Item = (String, Value)>) {
        self.write_map().extend(values);
    }

    /// The value of the typed variable `var`.
    pub fn read<T: DeserializeOwned>(&self, var: &Var<T>) -> Result<Option<T>, LiveError> {
        self.get(var.name)
    }

    /// Sets the typed variable `var`.
    pub fn put<T: Serialize>(&self, var: &Var<T>, value: T) -> Result<Option<Value>, LiveError> {
        self.set(var.name, value)
    }

    /// The value as prompt text: strings as they are, anything else as JSON.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get_json(name).map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

/// A variable name with its type (AG2's `Variable()` annotation): `const USER: Var<String>
/// = Var::new("user");` then `vars.read(&USER)`.
pub struct Var<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> Var<T> {
    /// The variable called `name`.
    pub const fn new(name: &'static str) -> Self {
        Var {
            name,
            _type: PhantomData,
        }
    }

    /// Its name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Var<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Var<T> {}

impl<T> std::fmt::Debug for Var<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var<{}>({})", std::any::type_name::<T>(), self.name)
    }
}
