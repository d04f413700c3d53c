//! A JSON document that keeps its keys in the order they were read.
//!
//! `serde_json::Value` sorts the keys of every object (the crate's
//! `preserve_order` feature would change that for every `Value` of the
//! program). A command that rewrites a few fields of a document porledger
//! wrote (`render` the `outputs` and `pdf` of a run's `manifest.json`) reads
//! it as an [`OrderedJson`], replaces those fields in place and writes it
//! again with the same writer: every other byte stays as it was, and a
//! rewrite that changes nothing gives the same bytes.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A JSON value whose objects keep their keys' order.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderedJson {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<OrderedJson>),
    Object(Vec<(String, OrderedJson)>),
}

impl OrderedJson {
    /// `value` as JSON, its fields in the order it serializes them.
    pub fn of(value: &impl Serialize) -> Result<OrderedJson, serde_json::Error> {
        serde_json::from_slice(&serde_json::to_vec(value)?)
    }

    /// Sets the field `key` of an object to `value`: in its place where the
    /// object has it, else before the first of `before` that it has, else
    /// last. Returns `false` (and changes nothing) when this is no object.
    pub fn set(&mut self, key: &str, value: OrderedJson, before: &[&str]) -> bool {
        let OrderedJson::Object(fields) = self else {
            return false;
        };
        if let Some(f) = fields.iter_mut().find(|(k, _)| k == key) {
            f.1 = value;
            return true;
        }
        let at = fields
            .iter()
            .position(|(k, _)| before.contains(&k.as_str()))
            .unwrap_or(fields.len());
        fields.insert(at, (key.to_string(), value));
        true
    }
}

impl Serialize for OrderedJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OrderedJson::Null => s.serialize_unit(),
            OrderedJson::Bool(b) => s.serialize_bool(*b),
            OrderedJson::Number(n) => n.serialize(s),
            OrderedJson::String(t) => s.serialize_str(t),
            OrderedJson::Array(items) => items.serialize(s),
            OrderedJson::Object(fields) => {
                let mut m = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OrderedJson, D::Error> {
        d.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = OrderedJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_none<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<OrderedJson, E> {
        serde_json::Number::from_f64(v)
            .map(OrderedJson::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedJson, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(OrderedJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedJson, A::Error> {
        let mut fields: Vec<(String, OrderedJson)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, OrderedJson>()? {
            // A repeated key: the last one counts, in the first one's place
            // (as for `serde_json::Value`).
            match fields.iter_mut().find(|(key, _)| *key == k) {
                Some(f) => f.1 = v,
                None => fields.push((k, v)),
            }
        }
        Ok(OrderedJson::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_written_again_byte_for_byte() {
        let text = r#"{
  "tool": "porledger",
  "version": "1.0",
  "inputs": [
    {
      "path": "b.csv",
      "role": "billing",
      "sha256": "ab",
      "bytes": 12
    }
  ],
  "counts": {
    "rows": 3,
    "negative": -4,
    "ratio": 0.25
  },
  "empty": {},
  "none": [],
  "pdf": null,
  "history": {
    "restates": 1
  }
}"#;
        let mut doc: OrderedJson = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string_pretty(&doc).unwrap(), text);
        // A field replaced keeps its place; a new one goes before `history`.
        #[derive(serde::Serialize)]
        struct Pdf {
            template: &'static str,
            documents: u32,
        }
        let pdf = OrderedJson::of(&Pdf {
            template: "default",
            documents: 2,
        })
        .unwrap();
        assert!(doc.set("pdf", pdf.clone(), &["history"]));
        assert!(doc.set("added", OrderedJson::Bool(true), &["history"]));
        let again = serde_json::to_string_pretty(&doc).unwrap();
        assert!(
            again.contains(
                "\"pdf\": {\n    \"template\": \"default\",\n    \"documents\": 2\n  },\n  \
                 \"added\": true,\n  \"history\""
            ),
            "{again}"
        );
        assert!(!OrderedJson::Null.set("pdf", pdf, &[]));
    }
}
