//! The partner table: every endpoint this one talks to (and itself), by
//! handle and by `(peer, endpoint)`, with the generation that makes stale
//! addresses fail, and the reset notices kept for `MX_VERBOSE`.

use super::state::Partner;
use super::types::PartnerReset;
use slab::Slab;
use std::collections::{HashMap, VecDeque};

/// The partners of one core.
pub(crate) struct Partners {
    pub(crate) slab: Slab<Partner>,
    /// Generation given to the next partner created.
    pub(crate) gen: u32,
    /// Entry of each `(peer, endpoint)`: how events find their partner.
    pub(crate) by_dest: HashMap<(u16, u8), usize>,
    /// Our own endpoint's entry.
    pub(crate) self_idx: usize,
    /// Reset notices not taken yet (kept only with `report_resets`).
    pub(crate) resets: VecDeque<PartnerReset>,
}

impl Partners {
    /// A table holding only ourselves (`me`, at `(peer, endpoint)`).
    pub(crate) fn new(me: Partner, peer: u16, endpoint: u8) -> Self {
        let mut slab = Slab::new();
        let self_idx = slab.insert(me);
        let mut by_dest = HashMap::new();
        by_dest.insert((peer, endpoint), self_idx);
        Partners {
            slab,
            gen: 2,
            by_dest,
            self_idx,
            resets: VecDeque::new(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, p: usize) -> Option<&Partner> {
        self.slab.get(p)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, p: usize) -> Option<&mut Partner> {
        self.slab.get_mut(p)
    }

    pub(crate) fn iter(&self) -> slab::Iter<'_, Partner> {
        self.slab.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }
}

impl core::ops::Index<usize> for Partners {
    type Output = Partner;
    #[inline]
    fn index(&self, p: usize) -> &Partner {
        &self.slab[p]
    }
}

impl core::ops::IndexMut<usize> for Partners {
    #[inline]
    fn index_mut(&mut self, p: usize) -> &mut Partner {
        &mut self.slab[p]
    }
}
