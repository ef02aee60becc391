//! `google.protobuf.Struct` and its `Value`, as prost messages: what Envoy's dynamic metadata
//! (a verified token's payload) and Istio's peer metadata (`x-envoy-peer-metadata`) are made of.

use std::collections::BTreeMap;

use prost::Message;

/// `google.protobuf.Struct`, as much as decoding a payload needs.
#[derive(Clone, PartialEq, Message)]
pub struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, ProtoValue>,
}

/// `google.protobuf.Value`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoValue {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(int32, tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Text(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
    #[prost(message, tag = "5")]
    Object(Struct),
    #[prost(message, tag = "6")]
    List(ListValue),
}

/// `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, Message)]
pub struct ListValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<ProtoValue>,
}

#[cfg(test)]
impl ProtoValue {
    /// A string value (tests build payloads with it).
    pub fn text(s: &str) -> ProtoValue {
        ProtoValue {
            kind: Some(Kind::Text(s.to_string())),
        }
    }
}

impl Struct {
    /// The string at `name`, if there is one.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.fields.get(name)?.kind.as_ref()? {
            Kind::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The object at `name`, if there is one.
    pub fn object(&self, name: &str) -> Option<&Struct> {
        match self.fields.get(name)?.kind.as_ref()? {
            Kind::Object(s) => Some(s),
            _ => None,
        }
    }
}
