//! The core's errors: each operation's own small enum, holding only what
//! that operation can produce. The C ABI turns each into its `mx_return_t`
//! ([`Return`](super::Return)) in `crate::ffi::core_errors`, one `From` per
//! type, so the codes the C side sees are decided in one place.

use core::fmt;

macro_rules! error_type {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $($name::$v => $text,)+
                })
            }
        }

        impl std::error::Error for $name {}
    };
}

error_type! {
    /// Why [`Config::validate`](super::Config::validate) (and so
    /// [`Core::new`](super::Core::new)) refused a configuration.
    ConfigError {
        /// A size or limit the core cannot work with.
        BadSize => "a size or limit of the configuration is out of range",
    }
}

error_type! {
    /// A request handle that names no live request of this core (never
    /// issued, already taken, or freed).
    RequestError {
        /// Unknown or stale handle.
        Unknown => "no such request",
    }
}

error_type! {
    /// Why [`Core::cancel`](super::Core::cancel) refused.
    CancelError {
        /// Unknown or stale handle.
        UnknownRequest => "no such request",
        /// A send: MX cannot cancel sends.
        Send => "a send cannot be cancelled",
    }
}

error_type! {
    /// Why [`Core::ibuffered`](super::Core::ibuffered) refused.
    BufferedError {
        /// Unknown or stale handle.
        UnknownRequest => "no such request",
        /// Not a send.
        NotASend => "only a send can be buffered",
    }
}

error_type! {
    /// An endpoint address naming no partner of this core.
    AddrError {
        /// Unknown partner, or a stale generation or session.
        Unknown => "no such endpoint address",
    }
}

error_type! {
    /// A match/mask pair refused ([`Core::iprobe`](super::Core::iprobe),
    /// [`Core::test_any`](super::Core::test_any)).
    MaskError {
        /// `match_info` has bits outside `mask`.
        MatchOutsideMask => "match info has bits outside the mask",
        /// The mask does not cover the context id bits.
        ContextIdMasked => "the mask does not cover the context id bits",
    }
}

error_type! {
    /// Why a send was refused ([`Core::isend`](super::Core::isend),
    /// [`Core::issend`](super::Core::issend)).
    SendError {
        /// The destination names no partner.
        UnknownAddr => "no such endpoint address",
        /// More segments than a region can hold.
        TooManySegments => "too many segments",
    }
}

error_type! {
    /// Why a receive was refused ([`Core::irecv`](super::Core::irecv)).
    RecvError {
        /// `match_info` has bits outside `mask`.
        MatchOutsideMask => "match info has bits outside the mask",
        /// The mask does not cover the context id bits.
        ContextIdMasked => "the mask does not cover the context id bits",
        /// More segments than a region can hold.
        TooManySegments => "too many segments",
    }
}

impl From<MaskError> for RecvError {
    fn from(e: MaskError) -> Self {
        match e {
            MaskError::MatchOutsideMask => RecvError::MatchOutsideMask,
            MaskError::ContextIdMasked => RecvError::ContextIdMasked,
        }
    }
}

impl From<RequestError> for CancelError {
    fn from(RequestError::Unknown: RequestError) -> Self {
        CancelError::UnknownRequest
    }
}

impl From<RequestError> for BufferedError {
    fn from(RequestError::Unknown: RequestError) -> Self {
        BufferedError::UnknownRequest
    }
}
