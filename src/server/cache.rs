//! The HTTP response cache (off unless `--response-cache-mb` is given): the answer of a
//! query kept by its exact request, valid while the store's write generation stays the
//! same, with an `ETag` so that a client holding the answer gets `304 Not Modified`.
//!
//! Only what is certain to answer the same is kept: a single query (never a mutation, a
//! subscription or a batch) that executed without an error, whose resolvers read nothing
//! but the stored data (none marked it volatile: the clock, a language model), and during
//! whose execution no write committed. Every write goes through the store's one writer,
//! which moves the generation on after each commit and before answering, so an entry of
//! an older generation is never served. A tag carries a number drawn when the process
//! starts, so a tag from before a restart never matches.
//!
//! The cache holds at most its byte budget of bodies: past it, entries of older
//! generations go first, then everything.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::HeaderValue;

/// What a request is known by: the media type it is answered in and the request as the
/// client sent it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    media: &'static str,
    query: String,
    operation_name: Option<String>,
    variables: String,
    extensions: String,
}

impl Key {
    pub fn new(
        media: &'static str,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&serde_json::Value>,
        extensions: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Self {
        Self {
            media,
            query: query.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            variables: variables.map(|v| v.to_string()).unwrap_or_default(),
            extensions: extensions
                .map(|e| serde_json::Value::Object(e.clone()).to_string())
                .unwrap_or_default(),
        }
    }

    fn size(&self) -> usize {
        self.query.len()
            + self.operation_name.as_ref().map_or(0, String::len)
            + self.variables.len()
            + self.extensions.len()
    }
}

/// A kept answer.
#[derive(Clone)]
pub struct Entry {
    pub generation: u64,
    pub etag: HeaderValue,
    pub body: Bytes,
}

pub struct ResponseCache {
    budget: usize,
    /// Drawn at start: part of every tag.
    epoch: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

impl ResponseCache {
    /// A cache of at most `budget` bytes of requests and bodies.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            epoch: fastrand::u64(..),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each change under the lock is one insert or removal with its byte count.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer kept for `key`, if it is of `generation`.
    pub fn get(&self, key: &Key, generation: u64) -> Option<Entry> {
        self.inner()
            .entries
            .get(key)
            .filter(|entry| entry.generation == generation)
            .cloned()
    }

    /// The tag of `key`'s answer at `generation`.
    pub fn tag(&self, key: &Key, generation: u64) -> HeaderValue {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let tag = format!(
            "\"{:016x}-{generation:x}-{:016x}\"",
            self.epoch,
            hasher.finish()
        );
        // Hex digits, dashes and quotes only.
        HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }

    /// Keeps `body` as `key`'s answer at `generation`; returns its tag.
    pub fn put(&self, key: Key, generation: u64, body: Bytes) -> HeaderValue {
        let etag = self.tag(&key, generation);
        let size = key.size() + body.len();
        if size > self.budget {
            return etag;
        }
        let mut inner = self.inner();
        if inner.bytes + size > self.budget {
            inner
                .entries
                .retain(|_, entry| entry.generation >= generation);
            inner.bytes = inner
                .entries
                .iter()
                .map(|(key, entry)| key.size() + entry.body.len())
                .sum();
            if inner.bytes + size > self.budget {
                inner.entries.clear();
                inner.bytes = 0;
            }
        }
        let entry = Entry {
            generation,
            etag: etag.clone(),
            body,
        };
        if let Some(old) = inner.entries.insert(key.clone(), entry) {
            inner.bytes -= key.size() + old.body.len();
        }
        inner.bytes += size;
        etag
    }
}

/// Whether an `If-None-Match` header names `etag` (or is `*`).
pub fn matches(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let etag = etag.as_bytes();
    value
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(query: &str) -> Key {
        Key::new("application/json", query, None, None, None)
    }

    #[test]
    fn an_answer_is_served_only_at_its_generation() {
        let cache = ResponseCache::new(1 << 20);
        let tag = cache.put(key("{ a }"), 3, Bytes::from_static(b"{}"));
        assert_eq!(
            cache.get(&key("{ a }"), 3).map(|e| e.etag),
            Some(tag.clone())
        );
        assert!(cache.get(&key("{ a }"), 4).is_none());
        assert!(cache.get(&key("{ b }"), 3).is_none());
        assert_ne!(
            cache.tag(&key("{ a }"), 4),
            tag,
            "a new generation, a new tag"
        );
        assert_ne!(
            cache.tag(&key("{ b }"), 3),
            tag,
            "another request, another tag"
        );
    }

    #[test]
    fn the_budget_drops_older_generations_first_then_everything() {
        let body = Bytes::from(vec![b'x'; 100]);
        let cache = ResponseCache::new(350);
        cache.put(key("1"), 1, body.clone());
        cache.put(key("2"), 2, body.clone());
        cache.put(key("3"), 2, body.clone());
        // Full: the entry of generation 1 goes.
        cache.put(key("4"), 2, body.clone());
        assert!(cache.get(&key("1"), 1).is_none());
        for k in ["2", "3", "4"] {
            assert!(cache.get(&key(k), 2).is_some(), "{k}");
        }
        // Full again, nothing older: all go, the new one stays.
        cache.put(key("5"), 2, body.clone());
        assert!(cache.get(&key("2"), 2).is_none());
        assert!(cache.get(&key("5"), 2).is_some());
        // Larger than the whole budget: never kept.
        cache.put(key("6"), 2, Bytes::from(vec![b'x'; 400]));
        assert!(cache.get(&key("6"), 2).is_none());
    }

    #[test]
    fn if_none_match_names_a_tag_in_a_list_weak_or_strong() {
        let tag = HeaderValue::from_static("\"abc\"");
        let header = |v: &'static str| Some(HeaderValue::from_static(v));
        assert!(matches(header("\"abc\"").as_ref(), &tag));
        assert!(matches(header("\"x\", W/\"abc\"").as_ref(), &tag));
        assert!(matches(header("*").as_ref(), &tag));
        assert!(!matches(header("\"abd\"").as_ref(), &tag));
        assert!(!matches(None, &tag));
    }
}
