//! The core's errors as `mx_return_t` codes: one `From` per error type, so
//! what the C side sees for each refusal is decided here and only here.
//! The codes are the ones the core returned before it had its own error
//! types (MX and Open-MX use them for the same refusals).

use super::types::MxReturn;
use crate::core::{
    AddrError, BufferedError, CancelError, ConfigError, MaskError, RecvError, RequestError, Return,
    SendError,
};

impl MxReturn {
    /// The C code of a core error (or of a [`Return`]). The only way the C
    /// side turns an error into a code: an `as u32` cast of a core error
    /// enum would compile and give its variant index instead.
    pub(crate) fn of(e: impl Into<Return>) -> Self {
        MxReturn(e.into() as u32)
    }
}

impl From<ConfigError> for Return {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::BadSize => Return::BadParamVal,
        }
    }
}

impl From<RequestError> for Return {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Unknown => Return::BadRequest,
        }
    }
}

impl From<CancelError> for Return {
    fn from(e: CancelError) -> Self {
        match e {
            // MX and Open-MX refuse to cancel a send with this code too.
            CancelError::UnknownRequest | CancelError::Send => Return::BadRequest,
        }
    }
}

impl From<BufferedError> for Return {
    fn from(e: BufferedError) -> Self {
        match e {
            BufferedError::UnknownRequest | BufferedError::NotASend => Return::BadRequest,
        }
    }
}

impl From<AddrError> for Return {
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::Unknown => Return::BadAddrList,
        }
    }
}

impl From<MaskError> for Return {
    fn from(e: MaskError) -> Self {
        match e {
            MaskError::MatchOutsideMask => Return::BadMatchMask,
            MaskError::ContextIdMasked => Return::BadMatchingForContextIdMask,
        }
    }
}

impl From<SendError> for Return {
    fn from(e: SendError) -> Self {
        match e {
            SendError::UnknownAddr => Return::BadAddrList,
            SendError::TooManySegments => Return::BadSegCnt,
        }
    }
}

impl From<RecvError> for Return {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::MatchOutsideMask => Return::BadMatchMask,
            RecvError::ContextIdMasked => Return::BadMatchingForContextIdMask,
            RecvError::TooManySegments => Return::BadSegCnt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant keeps the code the core returned for it before it had
    /// error types of its own: the C behaviour is unchanged.
    #[test]
    fn every_variant_maps_to_its_mx_code() {
        assert_eq!(Return::from(ConfigError::BadSize), Return::BadParamVal);
        assert_eq!(Return::from(RequestError::Unknown), Return::BadRequest);
        assert_eq!(
            Return::from(CancelError::UnknownRequest),
            Return::BadRequest
        );
        assert_eq!(Return::from(CancelError::Send), Return::BadRequest);
        assert_eq!(
            Return::from(BufferedError::UnknownRequest),
            Return::BadRequest
        );
        assert_eq!(Return::from(BufferedError::NotASend), Return::BadRequest);
        assert_eq!(Return::from(AddrError::Unknown), Return::BadAddrList);
        assert_eq!(
            Return::from(MaskError::MatchOutsideMask),
            Return::BadMatchMask
        );
        assert_eq!(
            Return::from(MaskError::ContextIdMasked),
            Return::BadMatchingForContextIdMask
        );
        assert_eq!(Return::from(SendError::UnknownAddr), Return::BadAddrList);
        assert_eq!(Return::from(SendError::TooManySegments), Return::BadSegCnt);
        assert_eq!(
            Return::from(RecvError::MatchOutsideMask),
            Return::BadMatchMask
        );
        assert_eq!(
            Return::from(RecvError::ContextIdMasked),
            Return::BadMatchingForContextIdMask
        );
        assert_eq!(Return::from(RecvError::TooManySegments), Return::BadSegCnt);
        // The codes themselves, as the C header numbers them.
        let codes = [
            (Return::BadParamVal, 26),
            (Return::BadRequest, 13),
            (Return::BadAddrList, 16),
            (Return::BadMatchMask, 14),
            (Return::BadMatchingForContextIdMask, 42),
            (Return::BadSegCnt, 12),
        ];
        for (r, v) in codes {
            assert_eq!(r as u32, v, "{r:?}");
        }
    }

    /// What the entry points report goes through the same table.
    #[test]
    fn the_c_code_of_an_error_is_its_return() {
        assert_eq!(MxReturn::of(CancelError::Send), MxReturn::BAD_REQUEST);
        assert_eq!(
            MxReturn::of(SendError::TooManySegments),
            MxReturn::BAD_SEG_CNT
        );
        assert_eq!(MxReturn::of(Return::Timeout), MxReturn::TIMEOUT);
    }

    /// The mask checks of a receive and of a probe agree.
    #[test]
    fn a_mask_error_is_the_same_receive_error() {
        for m in [MaskError::MatchOutsideMask, MaskError::ContextIdMasked] {
            assert_eq!(Return::from(RecvError::from(m)), Return::from(m));
        }
    }
}
