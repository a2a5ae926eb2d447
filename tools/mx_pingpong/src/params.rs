//! What the sender tells the receiver before a run, the message lengths
//! of a run, and the data pattern `-V` checks.

/// Match info of the parameter message.
pub const PARAM_MATCH: u64 = 0x0000_2222_1111_0000;
/// Match info of the explicit length list (`-L`), sent right after the
/// parameters when [`Params::list_count`] is non-zero.
pub const LIST_MATCH: u64 = PARAM_MATCH + 1;
/// Match info of ping `k` (sender to receiver) is `PING_BASE + k`.
pub const PING_BASE: u64 = 0x1000;
/// Match info of pong `k` (receiver to sender) is `PONG_BASE + k`.
pub const PONG_BASE: u64 = 0;

/// "MXPP".
pub const MAGIC: u32 = 0x4d58_5050;
/// Layout version of [`Params`].
pub const VERSION: u32 = 1;
/// Size of the encoded parameters.
pub const PARAMS_LEN: usize = 108;
/// Bytes of [`Params::hostname`] on the wire (NUL-padded).
pub const HOSTNAME_LEN: usize = 40;
/// Largest message length (`-E` is exclusive and at most this).
pub const MAX_LEN: u32 = 1 << 30;
/// Most entries of a `-L` list.
pub const MAX_LIST: usize = 1 << 20;

/// `flags` bit: check every byte of every message.
pub const FLAG_VERIFY: u32 = 1 << 0;
/// `flags` bit: both sides send synchronously (`mx_issend`).
pub const FLAG_ISSEND: u32 = 1 << 1;

/// Iterations never drop below this many under a byte budget.
pub const MIN_BUDGET_ITERS: u32 = 10;

/// The parameters of one run, sent by the sender with [`PARAM_MATCH`] as a
/// 108-byte big-endian struct:
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 4 | magic `0x4d585050` ("MXPP") |
/// | 4 | 4 | layout version (1) |
/// | 8 | 8 | sender's NIC id (the receiver connects back to it) |
/// | 16 | 4 | sender's endpoint id |
/// | 20 | 4 | key of the sender's endpoint |
/// | 24 | 4 | iterations per length (`-N`) |
/// | 28 | 4 | warm-up iterations per length (`-W`) |
/// | 32 | 4 | start length (`-S`) |
/// | 36 | 4 | end length, exclusive (`-E`) |
/// | 40 | 4 | increment (`-I`) |
/// | 44 | 4 | multiplier (`-M`; 0 = add the increment) |
/// | 48 | 4 | flags: bit 0 verify (`-V`), bit 1 issend (`-R`) |
/// | 52 | 4 | entries of an explicit length list (`-L`; 0 = use start/end/incr/mult); the list follows as its own message, match [`LIST_MATCH`], one big-endian u32 per length |
/// | 56 | 8 | byte budget per length and direction (0 = none): iterations for length `l` become `clamp(budget / l, min(10, N), N)`, warm-ups at most that |
/// | 64 | 4 | run id: seeds the `-V` data pattern |
/// | 68 | 40 | sender's hostname, NUL-padded (informational) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Sender's board address.
    pub nic_id: u64,
    /// Sender's endpoint id.
    pub endpoint: u32,
    /// Sender's endpoint key.
    pub key: u32,
    /// Timed iterations per length.
    pub iterations: u32,
    /// Untimed iterations before them.
    pub warmup: u32,
    /// First length.
    pub start: u32,
    /// End length (exclusive).
    pub end: u32,
    /// Arithmetic step.
    pub incr: u32,
    /// Geometric factor (0: arithmetic).
    pub mult: u32,
    /// [`FLAG_VERIFY`], [`FLAG_ISSEND`].
    pub flags: u32,
    /// Length of the explicit list sent after the parameters.
    pub list_count: u32,
    /// Byte budget per length and direction (0: none).
    pub budget: u64,
    /// Seeds the data pattern.
    pub run_id: u32,
    /// Sender's hostname (at most 40 bytes survive).
    pub hostname: String,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn be64(b: &[u8], off: usize) -> u64 {
    (u64::from(be32(b, off)) << 32) | u64::from(be32(b, off + 4))
}

impl Params {
    /// The 108 wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PARAMS_LEN);
        for v in [MAGIC, VERSION] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&self.nic_id.to_be_bytes());
        for v in [
            self.endpoint,
            self.key,
            self.iterations,
            self.warmup,
            self.start,
            self.end,
            self.incr,
            self.mult,
            self.flags,
            self.list_count,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&self.budget.to_be_bytes());
        b.extend_from_slice(&self.run_id.to_be_bytes());
        let mut name = [0u8; HOSTNAME_LEN];
        let n = self.hostname.len().min(HOSTNAME_LEN);
        name[..n].copy_from_slice(&self.hostname.as_bytes()[..n]);
        b.extend_from_slice(&name);
        debug_assert_eq!(b.len(), PARAMS_LEN);
        b
    }

    /// Parse and validate the wire bytes.
    ///
    /// # Errors
    /// A wrong size, magic or version, or values a sender would refuse.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != PARAMS_LEN {
            return Err(format!(
                "parameter message of {} bytes, expected {PARAMS_LEN}",
                b.len()
            ));
        }
        if be32(b, 0) != MAGIC || be32(b, 4) != VERSION {
            return Err(format!(
                "parameter message with magic {:#x} version {} (expected {MAGIC:#x} version {VERSION})",
                be32(b, 0),
                be32(b, 4)
            ));
        }
        let name = &b[68..68 + HOSTNAME_LEN];
        let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(HOSTNAME_LEN)];
        let p = Params {
            nic_id: be64(b, 8),
            endpoint: be32(b, 16),
            key: be32(b, 20),
            iterations: be32(b, 24),
            warmup: be32(b, 28),
            start: be32(b, 32),
            end: be32(b, 36),
            incr: be32(b, 40),
            mult: be32(b, 44),
            flags: be32(b, 48),
            list_count: be32(b, 52),
            budget: be64(b, 56),
            run_id: be32(b, 64),
            hostname: String::from_utf8_lossy(name).into_owned(),
        };
        p.validate()?;
        Ok(p)
    }

    /// Check what both sides rely on.
    ///
    /// # Errors
    /// Describes the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoint > u32::from(u8::MAX) {
            return Err(format!("bad sender endpoint {}", self.endpoint));
        }
        if self.iterations == 0 {
            return Err("iterations (-N) must be at least 1".into());
        }
        if self.list_count as usize > MAX_LIST {
            return Err(format!("more than {MAX_LIST} lengths"));
        }
        if self.list_count == 0 {
            if self.end > MAX_LEN {
                return Err(format!(
                    "end length (-E) {} is above the maximum {MAX_LEN} (1 GiB)",
                    self.end
                ));
            }
            if self.mult == 1 {
                return Err("multiplier (-M) must be at least 2".into());
            }
            if self.mult == 0 && self.incr == 0 {
                return Err("increment (-I) must be at least 1".into());
            }
        }
        Ok(())
    }

    /// Whether `-V` is on.
    pub fn verify(&self) -> bool {
        self.flags & FLAG_VERIFY != 0
    }

    /// Whether `-R` is on.
    pub fn issend(&self) -> bool {
        self.flags & FLAG_ISSEND != 0
    }

    /// The lengths of a run without an explicit list.
    pub fn generated_lengths(&self) -> impl Iterator<Item = u32> + '_ {
        let (end, incr, mult) = (
            u64::from(self.end),
            u64::from(self.incr),
            u64::from(self.mult),
        );
        let mut next = Some(u64::from(self.start));
        std::iter::from_fn(move || {
            let len = next.filter(|&l| l < end)?;
            next = Some(match mult {
                0 => len + incr.max(1),
                _ if len == 0 => 1,
                m => len * m,
            });
            Some(len as u32)
        })
    }

    /// Timed iterations for messages of `len` bytes.
    pub fn iterations_for(&self, len: u32) -> u32 {
        if self.budget == 0 || len == 0 {
            return self.iterations;
        }
        let fit = (self.budget / u64::from(len)).min(u64::from(u32::MAX)) as u32;
        fit.clamp(self.iterations.min(MIN_BUDGET_ITERS), self.iterations)
    }

    /// Warm-up iterations for messages of `len` bytes.
    pub fn warmup_for(&self, len: u32) -> u32 {
        self.warmup.min(self.iterations_for(len))
    }

    /// Round trips for messages of `len` bytes, warm-up included.
    pub fn messages_for(&self, len: u32) -> u64 {
        u64::from(self.warmup_for(len)) + u64::from(self.iterations_for(len))
    }
}

/// Encode a length list (the [`LIST_MATCH`] message).
pub fn encode_list(lengths: &[u32]) -> Vec<u8> {
    lengths.iter().flat_map(|l| l.to_be_bytes()).collect()
}

/// Decode a length list.
///
/// # Errors
/// A size that is not `4 * count`, or a length above [`MAX_LEN`].
pub fn decode_list(b: &[u8], count: u32) -> Result<Vec<u32>, String> {
    if b.len() != 4 * count as usize {
        return Err(format!(
            "length list of {} bytes, expected {}",
            b.len(),
            4 * count
        ));
    }
    let v: Vec<u32> = b.chunks_exact(4).map(|c| be32(c, 0)).collect();
    match v.iter().find(|&&l| l > MAX_LEN) {
        Some(l) => Err(format!("length {l} in the list is above {MAX_LEN}")),
        None => Ok(v),
    }
}

/// Parse a `-L` file: lengths separated by white space or commas,
/// decimal or 0x-hex; `#` starts a comment.
///
/// # Errors
/// A word that is not a number, a length above [`MAX_LEN`], an empty list.
pub fn parse_length_file(text: &str) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split(|c: char| c.is_whitespace() || c == ',') {
            if word.is_empty() {
                continue;
            }
            let len = crate::parse_u32(word).map_err(|e| format!("line {}: {e}", n + 1))?;
            if len > MAX_LEN {
                return Err(format!("line {}: length {len} is above {MAX_LEN}", n + 1));
            }
            v.push(len);
        }
    }
    if v.is_empty() {
        return Err("no lengths in the file".into());
    }
    if v.len() > MAX_LIST {
        return Err(format!("more than {MAX_LIST} lengths"));
    }
    Ok(v)
}

fn seed(run_id: u32, k: u64) -> u64 {
    // Never zero: xorshift would stay at zero.
    (u64::from(run_id) << 32 ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Fill `buf` with the pattern of message `k` of run `run_id`: a xorshift
/// stream, so a word in the wrong place or a message swapped with another
/// shows.
pub fn fill(buf: &mut [u8], run_id: u32, k: u64) {
    let mut x = seed(run_id, k);
    for chunk in buf.chunks_mut(8) {
        let w = next(&mut x).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The first byte of `buf` that differs from the pattern, as (offset, got,
/// expected).
pub fn check(buf: &[u8], run_id: u32, k: u64) -> Option<(usize, u8, u8)> {
    let mut x = seed(run_id, k);
    for (i, chunk) in buf.chunks(8).enumerate() {
        let w = next(&mut x).to_le_bytes();
        if chunk != &w[..chunk.len()] {
            let j = (0..chunk.len()).find(|&j| chunk[j] != w[j]).unwrap_or(0);
            return Some((i * 8 + j, chunk[j], w[j]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Params {
        Params {
            nic_id: 0x0260_dd47_1a2b,
            endpoint: 3,
            key: 0x12345,
            iterations: 1000,
            warmup: 10,
            start: 0,
            end: 128,
            incr: 1,
            mult: 0,
            flags: FLAG_VERIFY,
            list_count: 0,
            budget: 0,
            run_id: 0xdead_beef,
            hostname: "node1:0".into(),
        }
    }

    #[test]
    fn encode_is_108_big_endian_bytes_and_round_trips() {
        let p = sample();
        let b = p.encode();
        assert_eq!(b.len(), PARAMS_LEN);
        assert_eq!(&b[0..4], b"MXPP");
        assert_eq!(&b[8..16], &[0, 0, 0x02, 0x60, 0xdd, 0x47, 0x1a, 0x2b]);
        assert_eq!(&b[16..20], &[0, 0, 0, 3]);
        assert_eq!(&b[24..28], &1000u32.to_be_bytes());
        assert_eq!(&b[68..75], b"node1:0");
        assert_eq!(Params::decode(&b).unwrap(), p);
    }

    #[test]
    fn decode_refuses_garbage() {
        let mut b = sample().encode();
        assert!(Params::decode(&b[..100]).is_err());
        b[0] = 0;
        assert!(Params::decode(&b).is_err());
        let mut p = sample();
        p.iterations = 0;
        assert!(Params::decode(&p.encode()).is_err());
        let mut p = sample();
        p.end = MAX_LEN + 1;
        assert!(Params::decode(&p.encode()).is_err());
    }

    #[test]
    fn lengths_arithmetic_and_geometric() {
        let mut p = sample();
        p.start = 0;
        p.end = 5;
        assert_eq!(p.generated_lengths().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        p.incr = 3;
        p.start = 1;
        p.end = 10;
        assert_eq!(p.generated_lengths().collect::<Vec<_>>(), [1, 4, 7]);
        p.mult = 2;
        p.start = 0;
        p.end = 17;
        assert_eq!(
            p.generated_lengths().collect::<Vec<_>>(),
            [0, 1, 2, 4, 8, 16]
        );
        p.mult = 4;
        p.start = 3;
        p.end = MAX_LEN;
        let v: Vec<u32> = p.generated_lengths().collect();
        assert_eq!(v.last(), Some(&(3 << 28)));
    }

    #[test]
    fn budget_scales_iterations_down() {
        let mut p = sample();
        assert_eq!(p.iterations_for(1 << 20), 1000);
        p.budget = 64 << 20;
        assert_eq!(p.iterations_for(0), 1000);
        assert_eq!(p.iterations_for(4096), 1000);
        assert_eq!(p.iterations_for(1 << 20), 64);
        assert_eq!(p.iterations_for(1 << 30), MIN_BUDGET_ITERS);
        assert_eq!(p.warmup_for(1 << 30), 10);
        p.iterations = 3;
        assert_eq!(p.iterations_for(1 << 30), 3);
        assert_eq!(p.warmup_for(1 << 30), 3);
    }

    #[test]
    fn pattern_detects_any_changed_byte() {
        let mut b = vec![0u8; 1003];
        fill(&mut b, 7, 42);
        assert_eq!(check(&b, 7, 42), None);
        assert!(check(&b, 7, 43).is_some());
        b[1001] ^= 0x10;
        assert_eq!(check(&b, 7, 42).map(|(i, _, _)| i), Some(1001));
    }

    #[test]
    fn length_files() {
        assert_eq!(
            parse_length_file("0 1\n# c\n32, 0x21 # x\n").unwrap(),
            [0, 1, 32, 33]
        );
        assert!(parse_length_file("1 two").is_err());
        assert!(parse_length_file("# nothing").is_err());
        assert!(parse_length_file("2000000000").is_err());
        let l = [0, 8193, MAX_LEN];
        assert_eq!(decode_list(&encode_list(&l), 3).unwrap(), l);
        assert!(decode_list(&encode_list(&l), 2).is_err());
    }
}
