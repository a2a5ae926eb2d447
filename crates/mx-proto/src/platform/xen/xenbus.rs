//! The xenbus side of device type `mx`: the state machine both ends walk,
//! the xenstore layout, and the helper that creates the device directories
//! (the toolstack does not know device type `mx`).
//!
//! # Layout
//!
//! ```text
//! /local/domain/<domid>/device/mx/<n>/            owner <domid>, backend reads
//!     backend       = /local/domain/<be>/backend/mx/<domid>/<n>   (helper)
//!     backend-id    = <be>                                          (helper)
//!     state         = XenbusState                                   (frontend)
//!     num-ring-pages, ring-ref<i>, event-channel                    (frontend)
//! /local/domain/<be>/backend/mx/<domid>/<n>/      owner <be>, guest reads
//!     frontend      = /local/domain/<domid>/device/mx/<n>          (helper)
//!     frontend-id   = <domid>                                       (helper)
//!     online        = 1                                             (helper)
//!     state         = XenbusState                                   (backend)
//!     error         = why the backend refused (optional)            (backend)
//! ```
//!
//! # Handshake
//!
//! | step | frontend | backend |
//! |---|---|---|
//! | 1 | claims a slot in state Initialising (1) or Closed (6) | device appears: state InitWait (2) |
//! | 2 | grants the control ring, allocates the port, writes them and state Initialised (3) in one transaction | |
//! | 3 | | maps, binds, checks the control page, state Connected (4) |
//! | 4 | state Connected (4); sends its pool on the control ring | |
//! | 5 | detach: state Closing (5) | unmaps, unbinds: state Closed (6) |
//! | 6 | state Closed (6), frees its grants | state InitWait (2): the slot is free again |
//!
//! A backend that refuses writes Closed (6) and `error`. A domain that dies
//! loses its `/local/domain/<domid>` (libxl removes it) and xenstored fires
//! `@releaseDomain`: the backend closes its connections and removes its
//! `backend/mx/<domid>`.

use std::fmt;
use std::io;

use super::grant::DomId;
use super::xenstore::{Perm, Xenstore, NO_TX};

/// The xenbus device type of this driver.
pub const DEVICE_TYPE: &str = "mx";

/// `enum xenbus_state` (`xen/io/xenbus.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum XenbusState {
    /// 0: not yet known.
    Unknown = 0,
    /// 1: being set up.
    Initialising = 1,
    /// 2: waiting for information from the peer (backend only).
    InitWait = 2,
    /// 3: information published, waiting for the peer.
    Initialised = 3,
    /// 4: in use.
    Connected = 4,
    /// 5: being torn down.
    Closing = 5,
    /// 6: torn down.
    Closed = 6,
    /// 7: being reconfigured (not used by `mx`).
    Reconfiguring = 7,
    /// 8: reconfigured (not used by `mx`).
    Reconfigured = 8,
}

impl XenbusState {
    /// Parses the decimal value of a `state` node; `None` if it is not a
    /// known state (a peer that writes one is broken).
    pub fn parse(s: &str) -> Option<Self> {
        use XenbusState::*;
        Some(match s.trim().parse::<u8>().ok()? {
            0 => Unknown,
            1 => Initialising,
            2 => InitWait,
            3 => Initialised,
            4 => Connected,
            5 => Closing,
            6 => Closed,
            7 => Reconfiguring,
            8 => Reconfigured,
            _ => return None,
        })
    }

    /// The decimal value written to xenstore.
    pub fn as_str(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self, *self as u8)
    }
}

/// Which end of the device walks the states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The guest.
    Frontend,
    /// Dom0.
    Backend,
}

impl End {
    /// The transitions this end may make by itself.
    fn edges(self) -> &'static [(XenbusState, XenbusState)] {
        use XenbusState::*;
        match self {
            End::Frontend => &[
                (Unknown, Initialising),
                (Initialising, Initialised),
                (Initialised, Connected),
                (Connected, Closing),
                (Initialising, Closing),
                (Initialised, Closing),
                (Closing, Closed),
                (Closed, Initialising),
            ],
            End::Backend => &[
                (Unknown, Initialising),
                (Initialising, InitWait),
                (InitWait, Connected),
                (InitWait, Closed),
                (Connected, Closing),
                (Connected, Closed),
                (Closing, Closed),
                (Closed, InitWait),
            ],
        }
    }
}

/// The explicit state walker: the shortest sequence of legal transitions
/// from `from` to `to` for `end` (excluding `from`), or `None` if `to` cannot
/// be reached (asking for it is a bug in the caller).
pub fn walk(end: End, from: XenbusState, to: XenbusState) -> Option<Vec<XenbusState>> {
    if from == to {
        return Some(Vec::new());
    }
    // Breadth-first over at most 9 states.
    let mut prev: [Option<XenbusState>; 9] = [None; 9];
    let mut seen = [false; 9];
    let mut queue = std::collections::VecDeque::from([from]);
    seen[from as usize] = true;
    while let Some(s) = queue.pop_front() {
        for &(a, b) in end.edges() {
            if a == s && !seen[b as usize] {
                seen[b as usize] = true;
                prev[b as usize] = Some(s);
                if b == to {
                    let mut path = vec![b];
                    let mut cur = s;
                    while cur != from {
                        path.push(cur);
                        cur = prev[cur as usize].expect("walked back along the BFS tree");
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(b);
            }
        }
    }
    None
}

/// Writes each state of `walk(end, from, to)` to `state_path` in turn.
///
/// # Errors
/// `InvalidInput` if `to` is unreachable from `from`; a xenstore error.
pub fn switch_state(
    xs: &Xenstore,
    end: End,
    state_path: &str,
    from: XenbusState,
    to: XenbusState,
) -> io::Result<()> {
    let steps = walk(end, from, to).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no {end:?} transition from {from} to {to}"),
        )
    })?;
    for s in steps {
        xs.write(NO_TX, state_path, s.as_str())?;
    }
    Ok(())
}

/// Reads a `state` node: `Ok(None)` if it does not exist.
///
/// # Errors
/// `InvalidData` for an unknown state (the peer is broken), or a xenstore error.
pub fn read_state(xs: &Xenstore, path: &str) -> io::Result<Option<XenbusState>> {
    match xs.read_opt(NO_TX, path)? {
        None => Ok(None),
        Some(v) => XenbusState::parse(&v)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown xenbus state")),
    }
}

/// `/local/domain/<domid>/device/mx/<n>`.
pub fn frontend_path(domid: DomId, n: u32) -> String {
    format!("/local/domain/{domid}/device/{DEVICE_TYPE}/{n}")
}

/// `/local/domain/<be>/backend/mx/<domid>/<n>`.
pub fn backend_path(be: DomId, domid: DomId, n: u32) -> String {
    format!("/local/domain/{be}/backend/{DEVICE_TYPE}/{domid}/{n}")
}

/// Creates the frontend and backend directories of devices `0..slots` of
/// domain `domid` served by backend domain `be`, with their permissions,
/// unless they exist. Returns how many devices it created.
///
/// What `xl`'s hotplug would do for a device type it knew; the backend runs
/// it for every domain it sees (`@introduceDomain`), or a toolstack script
/// (`tools/xen-testbed/mx-xen-devices.sh`) does the same with
/// `xenstore-write` and `xenstore-chmod`.
///
/// # Errors
/// A xenstore error (e.g. `EACCES` when not run in the backend's domain).
pub fn create_devices(xs: &Xenstore, be: DomId, domid: DomId, slots: u32) -> io::Result<u32> {
    let mut created = 0;
    for n in 0..slots {
        let fe = frontend_path(domid, n);
        let bk = backend_path(be, domid, n);
        let made = xs.transaction(|tx| {
            if xs.read_opt(tx, &format!("{bk}/frontend"))?.is_some() {
                return Ok(false);
            }
            // Frontend: owned by the guest, readable by the backend.
            xs.write(tx, &format!("{fe}/backend"), &bk)?;
            xs.write(tx, &format!("{fe}/backend-id"), &be.to_string())?;
            xs.write(
                tx,
                &format!("{fe}/state"),
                XenbusState::Initialising.as_str(),
            )?;
            let fe_perms = [Perm::None(domid), Perm::Read(be)];
            let parent = format!("/local/domain/{domid}/device/{DEVICE_TYPE}");
            xs.set_perms(tx, &parent, &[Perm::None(be), Perm::Read(domid)])?;
            for p in [
                fe.clone(),
                format!("{fe}/backend"),
                format!("{fe}/backend-id"),
                format!("{fe}/state"),
            ] {
                xs.set_perms(tx, &p, &fe_perms)?;
            }
            // Backend: owned by the backend, readable by the guest.
            xs.write(tx, &format!("{bk}/frontend"), &fe)?;
            xs.write(tx, &format!("{bk}/frontend-id"), &domid.to_string())?;
            xs.write(tx, &format!("{bk}/online"), "1")?;
            xs.write(
                tx,
                &format!("{bk}/state"),
                XenbusState::Initialising.as_str(),
            )?;
            let be_perms = [Perm::None(be), Perm::Read(domid)];
            for p in [
                bk.clone(),
                format!("{bk}/frontend"),
                format!("{bk}/frontend-id"),
                format!("{bk}/online"),
                format!("{bk}/state"),
            ] {
                xs.set_perms(tx, &p, &be_perms)?;
            }
            Ok(true)
        })?;
        created += u32::from(made);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::XenbusState::*;
    use super::*;

    #[test]
    fn states_parse_and_print() {
        for s in [Unknown, Initialising, InitWait, Connected, Closed] {
            assert_eq!(XenbusState::parse(s.as_str()), Some(s));
        }
        assert_eq!(XenbusState::parse(" 4\n"), Some(Connected));
        assert_eq!(XenbusState::parse("9"), None);
        assert_eq!(XenbusState::parse("x"), None);
        assert_eq!(Connected.to_string(), "Connected(4)");
    }

    #[test]
    fn the_walker_takes_the_shortest_legal_path() {
        let f = End::Frontend;
        assert_eq!(
            walk(f, Initialising, Connected),
            Some(vec![Initialised, Connected])
        );
        assert_eq!(walk(f, Connected, Closed), Some(vec![Closing, Closed]));
        assert_eq!(
            walk(f, Closed, Initialised),
            Some(vec![Initialising, Initialised])
        );
        assert_eq!(walk(f, Initialised, Closed), Some(vec![Closing, Closed]));
        assert_eq!(walk(f, Connected, Connected), Some(vec![]));
        assert_eq!(walk(f, Initialising, InitWait), None, "backend-only state");
        let b = End::Backend;
        assert_eq!(
            walk(b, Initialising, Connected),
            Some(vec![InitWait, Connected])
        );
        assert_eq!(walk(b, Connected, InitWait), Some(vec![Closed, InitWait]));
        assert_eq!(walk(b, Closed, Connected), Some(vec![InitWait, Connected]));
        assert_eq!(walk(b, Connected, Initialised), None);
    }

    #[test]
    fn paths() {
        assert_eq!(frontend_path(5, 0), "/local/domain/5/device/mx/0");
        assert_eq!(backend_path(0, 5, 1), "/local/domain/0/backend/mx/5/1");
    }
}
