//! Argument lookup for resolution: an op's bound arguments by name, with const parameters
//! decoded into the Rust values the rules need.

use super::{ArgInfo, Bound, Res};
use crate::types::{Literal, TensorType, Type};

/// The arguments of one op, looked up by name.
pub(super) struct Args<'a, 'b> {
    pub(super) args: &'b [(&'b str, Bound<'a>)],
}

impl<'a> Args<'a, '_> {
    pub(super) fn get(&self, name: &str) -> Option<&Bound<'a>> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, b)| b)
    }

    pub(super) fn one(&self, name: &str) -> Res<ArgInfo<'a>> {
        match self.get(name) {
            Some(Bound::One(a)) => Ok(*a),
            Some(Bound::Tuple(_)) => Err(format!("argument `{name}` must be a single value")),
            None => Err(format!("missing argument `{name}`")),
        }
    }

    pub(super) fn tensor(&self, name: &str) -> Res<TensorType> {
        let a = self.one(name)?;
        Ok(match a.ty {
            Type::Tensor(t) => t.clone(),
            Type::Scalar(d) => TensorType::new(*d, []),
        })
    }

    pub(super) fn opt_tensor(&self, name: &str) -> Res<Option<TensorType>> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.tensor(name).map(Some),
        }
    }

    pub(super) fn param(&self, name: &str) -> Res<Option<&'a Literal>> {
        match self.get(name) {
            None => Ok(None),
            Some(Bound::Tuple(_)) => Err(format!("argument `{name}` must be a single value")),
            Some(Bound::One(a)) => a
                .value
                .map(Some)
                .ok_or_else(|| format!("argument `{name}` must name a const")),
        }
    }

    /// A const parameter decoded by `decode`, or an error saying it must be `what`.
    fn decoded<T>(
        &self,
        name: &str,
        what: &str,
        decode: impl FnOnce(&'a Literal) -> Option<T>,
    ) -> Res<Option<T>> {
        match self.param(name)? {
            None => Ok(None),
            Some(l) => decode(l)
                .map(Some)
                .ok_or_else(|| format!("argument `{name}` must be {what}")),
        }
    }

    pub(super) fn ints(&self, name: &str) -> Res<Option<Vec<i64>>> {
        self.decoded(name, "an integer const", Literal::as_i64_vec)
    }

    pub(super) fn req_ints(&self, name: &str) -> Res<Vec<i64>> {
        self.ints(name)?
            .ok_or_else(|| format!("missing argument `{name}`"))
    }

    pub(super) fn int(&self, name: &str) -> Res<Option<i64>> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(_) => Err(format!("argument `{name}` must be a scalar")),
        }
    }

    pub(super) fn bool(&self, name: &str) -> Res<Option<bool>> {
        self.decoded(name, "a bool const", Literal::as_bool)
    }

    pub(super) fn string(&self, name: &str) -> Res<Option<&'a str>> {
        self.decoded(name, "a string const", Literal::as_str)
    }

    /// A numeric const (a scalar or a one-element tensor).
    pub(super) fn number(&self, name: &str) -> Res<Option<f32>> {
        let Some(l) = self.param(name)? else {
            return Ok(None);
        };
        let v = match l {
            Literal::Scalar(s) => s.as_f64().map(|v| vec![v as f32]),
            Literal::Tensor { data, .. } => Some(data.to_f32()),
            Literal::Blob { .. } => None,
        };
        match v.as_deref() {
            Some(&[x]) => Ok(Some(x)),
            _ => Err(format!("argument `{name}` must be a numeric scalar const")),
        }
    }

    /// The element count of a const parameter (its values are read by the device).
    pub(super) fn param_len(&self, name: &str) -> Res<Option<usize>> {
        Ok(self.param(name)?.map(|l| l.ty().numel()))
    }
}
