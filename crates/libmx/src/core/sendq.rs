//! The send-queue slots as the core hands them out: free, posted to the
//! backend (until its `SendMediumDone`), and kept by a medium message until
//! its ack (so it may complete before, and be resent without a copy).

use std::collections::VecDeque;

/// Who holds each send-queue slot. A slot is free once it is neither kept
/// nor posted. The free list is a stack: the slot freed last is reused
/// first, while its cache lines are still warm (a queue would walk every
/// slot of the send queue, cold, in turn).
#[derive(Debug)]
pub(crate) struct SendSlots {
    free: VecDeque<u16>,
    /// Per slot: posts the backend has not reported done yet.
    posts: Vec<u16>,
    /// Per slot: kept by a medium message until its ack.
    kept: Vec<bool>,
}

impl SendSlots {
    pub(crate) fn new(n: u16) -> Self {
        SendSlots {
            free: (0..n).collect(),
            posts: vec![0; usize::from(n)],
            kept: vec![false; usize::from(n)],
        }
    }

    /// Keep `n` slots at once for one message, leaving at least one free
    /// (so a message that keeps none always gets one eventually); `None`
    /// when there are not that many.
    pub(crate) fn keep(&mut self, n: usize) -> Option<Vec<u16>> {
        if self.free.len() <= n {
            return None;
        }
        let v: Vec<u16> = self.free.drain(self.free.len() - n..).collect();
        for &x in &v {
            self.kept[usize::from(x)] = true;
        }
        Some(v)
    }

    /// One free slot, for a single post.
    pub(crate) fn take(&mut self) -> Option<u16> {
        self.free.pop_back()
    }

    /// Slot `slot` goes to the backend once more.
    pub(crate) fn post(&mut self, slot: u16) {
        self.posts[usize::from(slot)] += 1;
    }

    /// The backend is done with one post of `slot`; false if it had none
    /// (the event lied).
    pub(crate) fn done(&mut self, slot: u16) -> bool {
        let i = usize::from(slot);
        match self.posts.get_mut(i) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 && !self.kept[i] {
                    self.free.push_back(slot);
                }
                true
            }
            _ => false,
        }
    }

    /// A message gives back the slots it kept.
    pub(crate) fn release(&mut self, slots: Vec<u16>) {
        for x in slots {
            let i = usize::from(x);
            self.kept[i] = false;
            if self.posts[i] == 0 {
                self.free.push_back(x);
            }
        }
    }
}
