//! Scratch buffers reused by each thread across calls. The column matrices and Winograd's
//! transformed tiles are written whole before they are read, yet a fresh `vec![0; n]` of
//! them per call (and per rayon split) zeroed up to 2 MiB each time: 3–4% of a ResNet-50
//! forward + backward pass was that memset.

use std::cell::RefCell;
use std::marker::PhantomData;

use candle_core::WithDType;

/// Buffers kept per thread, and the largest kept (bytes): a call's scratch is a few MiB.
const KEEP: usize = 4;
const KEEP_BYTES: usize = 64 << 20;

thread_local! {
    static POOL: RefCell<Vec<Vec<u64>>> = const { RefCell::new(Vec::new()) };
}

/// `len` elements of `T` from this thread's pool, returned to it on drop. The contents are
/// whatever an earlier user left (zeros when new): callers write before they read.
pub(crate) struct Scratch<T> {
    words: Vec<u64>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: WithDType> Scratch<T> {
    pub(crate) fn new(len: usize) -> Self {
        // u64 words: aligned for every element type candle has.
        let need = (len * std::mem::size_of::<T>()).div_ceil(8);
        let mut words = POOL
            .with(|p| {
                let mut p = p.borrow_mut();
                // The smallest kept buffer that is large enough, else the largest (grown).
                let fit = (0..p.len())
                    .filter(|&i| p[i].len() >= need)
                    .min_by_key(|&i| p[i].len())
                    .or_else(|| (0..p.len()).max_by_key(|&i| p[i].len()));
                fit.map(|i| p.swap_remove(i))
            })
            .unwrap_or_default();
        if words.len() < need {
            words.resize(need, 0);
        }
        Scratch {
            words,
            len,
            _t: PhantomData,
        }
    }
}

impl<T: WithDType> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the words are initialised, hold at least `len` elements, are aligned for
        // `T`, and every bit pattern is a valid value of candle's element types.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: WithDType> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, and the buffer is this guard's alone.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        let words = std::mem::take(&mut self.words);
        if words.len() * 8 > KEEP_BYTES {
            return;
        }
        // `try_with`: a thread being torn down has no pool left to return to.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(words);
            } else if let Some(i) = (0..p.len()).min_by_key(|&i| p[i].len()) {
                // Keep the larger buffers: the next call of the same op needs as much.
                if p[i].len() < words.len() {
                    p[i] = words;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer comes back to its thread's pool and is handed out again, holding what was
    /// written; two live at once are distinct.
    #[test]
    fn buffers_are_reused_and_distinct() {
        let ptr = {
            let mut a = Scratch::<f32>::new(1000);
            a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            a.as_ptr()
        };
        let b = Scratch::<f32>::new(500);
        assert_eq!(b.as_ptr(), ptr, "the kept buffer is reused");
        assert_eq!(b[499], 499.0);
        let c = Scratch::<f64>::new(500);
        assert_ne!(c.as_ptr() as usize, b.as_ptr() as usize);
        assert_eq!(c.len(), 500);
    }
}
