//! Small helpers with no domain meaning, shared by the stages.

/// Reuses a vector's allocation for a vector of another lifetime (or type of
/// the same size): the buffers of one record serve the next, on the hot path.
pub fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}
