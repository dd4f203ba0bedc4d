//! A SQLite column, typed by its values: SQLite types each value, not the
//! column. Integers only → integer (boolean where the declared type says
//! BOOL and every value is 0 or 1); integers and reals → float; text only →
//! text; blobs only → bytes; only NULLs → the declared type's affinity;
//! any other mix → every value shown as text (blobs as hex). Values go
//! into typed buffers as they come; only a mixed column is converted.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, BooleanBufferBuilder, NullBufferBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array};
use arrow_buffer::ScalarBuffer;

use super::encode::Kind;

pub(super) struct Dynamic {
    declared: Kind,
    state: State,
}

enum State {
    /// Only NULLs so far.
    Nulls(usize),
    /// Integers and reals: an integer's bits or a real's, told apart by
    /// `real` (reals are rare in an INTEGER column and vice versa, but a
    /// mixed column must still print each value as it was).
    Numbers {
        bits: Vec<u64>,
        real: BooleanBufferBuilder,
        any_real: bool,
        bool_like: bool,
        valid: NullBufferBuilder,
    },
    Text(StringBuilder),
    Blobs(BinaryBuilder),
    /// Storage classes mixed: every value as text.
    Mixed(StringBuilder),
}

/// The declared type's affinity, used when the values do not decide.
fn declared_kind(declared: &str) -> Kind {
    let d = declared.to_ascii_uppercase();
    if d.contains("BOOL") {
        Kind::Boolean
    } else if d.contains("INT") {
        Kind::Integer
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        Kind::Float
    } else if d.contains("BLOB") {
        Kind::Bytes
    } else {
        Kind::Text
    }
}

const INITIAL: usize = 1024;

impl Dynamic {
    pub(super) fn new(declared: &str) -> Self {
        Self { declared: declared_kind(declared), state: State::Nulls(0) }
    }

    pub(super) fn null(&mut self) {
        match &mut self.state {
            State::Nulls(n) => *n += 1,
            State::Numbers { bits, real, valid, .. } => {
                bits.push(0);
                real.append(false);
                valid.append_null();
            }
            State::Text(b) | State::Mixed(b) => b.append_null(),
            State::Blobs(b) => b.append_null(),
        }
    }

    fn numbers(&mut self) -> Option<(&mut Vec<u64>, &mut BooleanBufferBuilder, &mut NullBufferBuilder)> {
        if let State::Nulls(n) = self.state {
            let mut valid = NullBufferBuilder::new(INITIAL.max(n));
            valid.append_n_nulls(n);
            let mut real = BooleanBufferBuilder::new(INITIAL.max(n));
            real.append_n(n, false);
            let mut bits = Vec::with_capacity(INITIAL.max(n));
            bits.resize(n, 0);
            self.state = State::Numbers { bits, real, any_real: false, bool_like: true, valid };
        }
        match &mut self.state {
            State::Numbers { bits, real, valid, .. } => Some((bits, real, valid)),
            _ => None,
        }
    }

    pub(super) fn int(&mut self, v: i64) {
        if let Some((bits, real, valid)) = self.numbers() {
            bits.push(v as u64);
            real.append(false);
            valid.append_non_null();
            if let State::Numbers { bool_like, .. } = &mut self.state {
                *bool_like &= v == 0 || v == 1;
            }
        } else {
            self.mixed().append_value(v.to_string());
        }
    }

    pub(super) fn real(&mut self, v: f64) {
        if let Some((bits, real, valid)) = self.numbers() {
            bits.push(v.to_bits());
            real.append(true);
            valid.append_non_null();
            if let State::Numbers { any_real, .. } = &mut self.state {
                *any_real = true;
            }
        } else {
            self.mixed().append_value(v.to_string());
        }
    }

    pub(super) fn text(&mut self, v: &str) {
        if let State::Nulls(n) = self.state {
            let mut b = StringBuilder::with_capacity(INITIAL.max(n), INITIAL * 8);
            (0..n).for_each(|_| b.append_null());
            self.state = State::Text(b);
        }
        match &mut self.state {
            State::Text(b) | State::Mixed(b) => b.append_value(v),
            _ => self.mixed().append_value(v),
        }
    }

    pub(super) fn blob(&mut self, v: &[u8]) {
        if let State::Nulls(n) = self.state {
            let mut b = BinaryBuilder::with_capacity(INITIAL.max(n), INITIAL * 8);
            (0..n).for_each(|_| b.append_null());
            self.state = State::Blobs(b);
        }
        match &mut self.state {
            State::Blobs(b) => b.append_value(v),
            _ => self.mixed().append_value(hex::encode(v)),
        }
    }

    /// The column as text from here on, the values so far converted.
    fn mixed(&mut self) -> &mut StringBuilder {
        let state = std::mem::replace(&mut self.state, State::Nulls(0));
        self.state = State::Mixed(match state {
            State::Mixed(b) | State::Text(b) => b,
            State::Nulls(n) => {
                let mut b = StringBuilder::new();
                (0..n).for_each(|_| b.append_null());
                b
            }
            State::Numbers { bits, real, valid, .. } => {
                let (mut real, valid) = (real, valid.build());
                let real = real.finish();
                let mut b = StringBuilder::with_capacity(bits.len(), bits.len() * 8);
                for (i, v) in bits.into_iter().enumerate() {
                    if valid.as_ref().is_some_and(|n| n.is_null(i)) {
                        b.append_null();
                    } else if real.value(i) {
                        b.append_value(f64::from_bits(v).to_string());
                    } else {
                        b.append_value((v as i64).to_string());
                    }
                }
                b
            }
            State::Blobs(mut blobs) => {
                let blobs = blobs.finish();
                let mut b = StringBuilder::with_capacity(blobs.len(), blobs.value_data().len() * 2);
                for v in blobs.iter() {
                    b.append_option(v.map(hex::encode));
                }
                b
            }
        });
        match &mut self.state {
            State::Mixed(b) => b,
            _ => unreachable!("just set"),
        }
    }

    pub(super) fn finish(self) -> (Kind, ArrayRef) {
        match self.state {
            State::Nulls(n) => (self.declared, arrow_array::new_null_array(&self.declared.arrow_type(), n)),
            State::Numbers { bits, mut real, any_real, bool_like, mut valid } => {
                let nulls = valid.finish();
                if any_real {
                    let real = real.finish();
                    let floats: Vec<f64> = bits
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| if real.value(i) { f64::from_bits(v) } else { v as i64 as f64 })
                        .collect();
                    (Kind::Float, Arc::new(Float64Array::new(ScalarBuffer::from(floats), nulls)))
                } else if self.declared == Kind::Boolean && bool_like {
                    let values = bits.iter().map(|v| *v != 0).collect::<Vec<bool>>();
                    (Kind::Boolean, Arc::new(BooleanArray::new(values.into(), nulls)))
                } else {
                    let ints: Vec<i64> = bits.into_iter().map(|v| v as i64).collect();
                    (Kind::Integer, Arc::new(Int64Array::new(ScalarBuffer::from(ints), nulls)))
                }
            }
            State::Text(mut b) | State::Mixed(mut b) => (Kind::Text, Arc::new(b.finish())),
            State::Blobs(mut b) => (Kind::Bytes, Arc::new(b.finish())),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;

    use super::*;

    fn column(declared: &str, fill: impl FnOnce(&mut Dynamic)) -> (Kind, ArrayRef) {
        let mut d = Dynamic::new(declared);
        fill(&mut d);
        d.finish()
    }

    #[test]
    fn kinds_follow_values_then_declaration() {
        fn kind(declared: &str, fill: impl FnOnce(&mut Dynamic)) -> Kind {
            column(declared, fill).0
        }
        assert_eq!(kind("INTEGER", |d| (d.int(1), d.null()).1), Kind::Integer);
        assert_eq!(kind("", |d| (d.int(1), d.real(0.5)).1), Kind::Float);
        assert_eq!(kind("BOOLEAN", |d| (d.int(1), d.int(0)).1), Kind::Boolean);
        assert_eq!(kind("BOOLEAN", |d| d.int(2)), Kind::Integer);
        assert_eq!(kind("REAL", |d| d.null()), Kind::Float);
        assert_eq!(kind("", |d| (d.int(1), d.text("a")).1), Kind::Text);
        assert_eq!(kind("BLOB", |_| {}), Kind::Bytes);
        assert_eq!(kind("", |d| (d.blob(b"\x01"), d.null()).1), Kind::Bytes);
    }

    #[test]
    fn a_mixed_column_shows_each_value_as_it_was() {
        // An integer past 2^53 survives a real before it and a text after.
        let (kind, array) = column("", |d| {
            d.null();
            d.int(9_007_199_254_740_993);
            d.real(0.5);
            d.text("x");
            d.blob(&[0xff]);
            d.int(-1);
        });
        assert_eq!(kind, Kind::Text);
        let a = array.as_string::<i32>();
        let got: Vec<_> = (0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect();
        let want = [None, Some("9007199254740993"), Some("0.5"), Some("x"), Some("ff"), Some("-1")];
        assert_eq!(got, want.map(|v| v.map(String::from)));
    }

    #[test]
    fn numbers_keep_nulls_and_exact_values() {
        let (kind, array) = column("", |d| {
            d.null();
            d.int(3);
            d.real(0.25);
        });
        assert_eq!(kind, Kind::Float);
        let a = array.as_primitive::<arrow_array::types::Float64Type>();
        assert!(a.is_null(0));
        assert_eq!((a.value(1), a.value(2)), (3.0, 0.25));
        let (_, array) = column("INT", |d| (d.int(i64::MIN), d.null()).1);
        let a = array.as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(a.value(0), i64::MIN);
        assert!(a.is_null(1));
    }
}
