//! Output caps: the first half of the budget streams live, the last half is kept in a ring and
//! sent when the command ends, preceded by how many bytes were dropped in between. A command that
//! prints gigabytes costs the supervisor at most one budget of memory per stream.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Capped {
    head_left: usize,
    tail_cap: usize,
    tail: VecDeque<u8>,
    dropped: u64,
}

impl Capped {
    pub fn new(budget: usize) -> Self {
        let head = budget.div_ceil(2);
        Self {
            head_left: head,
            tail_cap: budget - head,
            tail: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Takes a chunk; returns the part to stream now. The rest goes to the tail ring.
    pub fn admit<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let n = chunk.len().min(self.head_left);
        self.head_left -= n;
        let rest = &chunk[n..];
        for &b in rest {
            if self.tail.len() == self.tail_cap {
                self.tail.pop_front();
                self.dropped += 1;
            }
            if self.tail_cap > 0 {
                self.tail.push_back(b);
            } else {
                self.dropped += 1;
            }
        }
        &chunk[..n]
    }

    /// Bytes dropped between head and tail, and the tail itself.
    pub fn finish(self) -> (u64, Vec<u8>) {
        (self.dropped, self.tail.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_passes_through() {
        let mut c = Capped::new(10);
        assert_eq!(c.admit(b"abc"), b"abc");
        assert_eq!(c.finish(), (0, Vec::new()));
    }

    #[test]
    fn keeps_head_and_tail_and_counts_the_gap() {
        let mut c = Capped::new(8);
        let mut streamed = Vec::new();
        for chunk in [&b"0123"[..], b"456789", b"abcdef"] {
            streamed.extend_from_slice(c.admit(chunk));
        }
        assert_eq!(streamed, b"0123");
        let (dropped, tail) = c.finish();
        assert_eq!(tail, b"cdef");
        assert_eq!(dropped, 16 - 8);
    }
}
