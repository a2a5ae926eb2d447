//! What the sender tells the receiver before a run, the message lengths
//! of a run, and the data pattern `-V` checks.
//!
//! The parameter message is the classic mx_pingpong's, so either side can
//! be the C program of MX or Open-MX: see [`Params`].

/// Match info of the parameter message.
pub const PARAM_MATCH: u64 = 0x0000_2222_1111_0000;
/// Match info of the explicit length list (`-L`), sent right after the
/// parameters when [`Params::list_count`] is non-zero (our extension).
pub const LIST_MATCH: u64 = PARAM_MATCH + 1;
/// Match info of ping `k` (sender to receiver) is `PING_BASE + k`.
pub const PING_BASE: u64 = 0x1000;
/// Match info of pong `k` (receiver to sender) is `PONG_BASE + k`.
pub const PONG_BASE: u64 = 0;

/// Size of the encoded parameters (the C struct, padding included).
pub const PARAMS_LEN: usize = 108;
/// Bytes of the multiplier string, NUL included.
pub const MULT_LEN: usize = 64;
/// Largest message length (`-E` is exclusive and at most this).
pub const MAX_LEN: u32 = 1 << 30;
/// Most entries of a `-L` list.
pub const MAX_LIST: usize = 1 << 20;
/// Largest `-M`: anything above makes the second length past any `-E`.
pub const MAX_MULT: f64 = MAX_LEN as f64;
/// Largest iteration and warm-up counts (the classic tool's are `int`).
pub const MAX_ITER: u32 = i32::MAX as u32;

/// Iterations never drop below this many under a byte budget.
pub const MIN_BUDGET_ITERS: u32 = 10;

/// The parameters of one run, sent by the sender with [`PARAM_MATCH`] as
/// the classic tool's 108-byte struct, integers big-endian:
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 4 | start length (`-S`) |
/// | 4 | 4 | end length, exclusive (`-E`) |
/// | 8 | 4 | increment (`-I`; 0, or negative as a C `int`: multiply instead) |
/// | 12 | 4 | warm-up iterations per length (`-W`) |
/// | 16 | 4 | verify (`-V`), 0 or 1 |
/// | 20 | 4 | iterations per length (`-N`) |
/// | 24 | 4 | block in wait (`-w`), 0 or 1: the receiver does as the sender |
/// | 28 | 4 | sender's endpoint id (the receiver connects back to it) |
/// | 32 | 4 | synchronous sends (`-R`), 0 or 1 |
/// | 36 | 4 | sender's NIC id, low 32 bits |
/// | 40 | 2 | sender's NIC id, high 16 bits |
/// | 42 | 64 | multiplier (`-M`) as C's `"%f"` of a `float`, NUL-terminated |
/// | 106 | 2 | padding |
///
/// Our extensions ride in the multiplier string after the number, as
/// space-separated `key=value` words, which C's `atof` stops before and a
/// classic sender never writes: `seed=<hex>` (the data pattern of `-V`, so
/// our receiver checks every ping too), `budget=<MiB>` (`--budget`) and
/// `list=<count>` (`-L`: the lengths follow as their own message). A
/// classic receiver cannot follow a budget or a list; classic senders
/// never ask for one.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Sender's board address (48 bits).
    pub nic_id: u64,
    /// Sender's endpoint id.
    pub endpoint: u32,
    /// Timed iterations per length.
    pub iterations: u32,
    /// Untimed iterations before them.
    pub warmup: u32,
    /// First length.
    pub start: u32,
    /// End length (exclusive).
    pub end: u32,
    /// Arithmetic step; as a C `int`, a value that is not positive means
    /// geometric steps by [`Params::mult`].
    pub incr: u32,
    /// Geometric factor (used when `incr` is not positive).
    pub mult: f64,
    /// `-V`.
    pub verify: bool,
    /// `-w`: both sides block in wait.
    pub block: bool,
    /// `-R`: both sides send synchronously.
    pub issend: bool,
    /// Seeds the `-V` data pattern of our sender (`None`: a classic
    /// sender, whose data only the sender itself checks).
    pub seed: Option<u32>,
    /// Byte budget per length and direction (0: none): iterations for
    /// length `l` become `clamp(budget / l, min(10, N), N)`, warm-ups at
    /// most that.
    pub budget: u64,
    /// Length of the explicit list sent after the parameters.
    pub list_count: u32,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// What C's `atof` reads at the start of `s`: the longest prefix that is a
/// number, else 0.
fn atof(s: &str) -> f64 {
    let s = s.trim_start();
    let n = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E')))
        .unwrap_or(s.len());
    (1..=n)
        .rev()
        .find_map(|i| s[..i].parse::<f64>().ok())
        .unwrap_or(0.0)
}

impl Params {
    /// The multiplier as the receiver reads it back from the wire (C's
    /// `"%f"` of the `float`): both sides step lengths with this value.
    pub fn wire_mult(mult: f64) -> f64 {
        atof(&format!("{:.6}", f64::from(mult as f32)))
    }

    /// The 108 wire bytes.
    ///
    /// # Errors
    /// The multiplier string does not fit its 64 bytes (a `-M` above
    /// [`MAX_MULT`]).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut b = Vec::with_capacity(PARAMS_LEN);
        for v in [
            self.start,
            self.end,
            self.incr,
            self.warmup,
            u32::from(self.verify),
            self.iterations,
            u32::from(self.block),
            self.endpoint,
            u32::from(self.issend),
            self.nic_id as u32,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&((self.nic_id >> 32) as u16).to_be_bytes());
        let mut m = format!("{:.6}", f64::from(self.mult as f32));
        if let Some(seed) = self.seed {
            m.push_str(&format!(" seed={seed:08x}"));
        }
        if self.budget > 0 {
            m.push_str(&format!(" budget={}", self.budget >> 20));
        }
        if self.list_count > 0 {
            m.push_str(&format!(" list={}", self.list_count));
        }
        if m.len() >= MULT_LEN {
            return Err(format!(
                "multiplier {} does not fit the parameters",
                self.mult
            ));
        }
        let mut field = [0u8; MULT_LEN];
        field[..m.len()].copy_from_slice(m.as_bytes());
        b.extend_from_slice(&field);
        b.extend_from_slice(&[0, 0]);
        debug_assert_eq!(b.len(), PARAMS_LEN);
        Ok(b)
    }

    /// Parse and validate the wire bytes (from any sender: nothing is
    /// trusted).
    ///
    /// # Errors
    /// A wrong size, or values no sender may ask for.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() != PARAMS_LEN {
            return Err(format!(
                "parameter message of {} bytes, expected {PARAMS_LEN}",
                b.len()
            ));
        }
        let field = &b[42..42 + MULT_LEN];
        let field = &field[..field.iter().position(|&c| c == 0).unwrap_or(MULT_LEN)];
        let text = String::from_utf8_lossy(field);
        let mut words = text.split_ascii_whitespace();
        let mult = words.next().map_or(0.0, atof);
        let mut p = Params {
            start: be32(b, 0),
            end: be32(b, 4),
            incr: be32(b, 8),
            warmup: be32(b, 12),
            verify: be32(b, 16) != 0,
            iterations: be32(b, 20),
            block: be32(b, 24) != 0,
            endpoint: be32(b, 28),
            issend: be32(b, 32) != 0,
            nic_id: u64::from(u16::from_be_bytes([b[40], b[41]])) << 32 | u64::from(be32(b, 36)),
            mult,
            seed: None,
            budget: 0,
            list_count: 0,
        };
        for w in words {
            let Some((key, value)) = w.split_once('=') else {
                continue;
            };
            let bad = || format!("bad parameter extension {w:?}");
            match key {
                "seed" => p.seed = Some(u32::from_str_radix(value, 16).map_err(|_| bad())?),
                "budget" => {
                    p.budget = value
                        .parse::<u32>()
                        .map(|m| u64::from(m) << 20)
                        .map_err(|_| bad())?
                }
                "list" => p.list_count = value.parse().map_err(|_| bad())?,
                // Someone else's extension: ignored, as a classic receiver would.
                _ => {}
            }
        }
        p.check_wire()?;
        Ok(p)
    }

    /// What a receiver relies on, whoever sent it.
    fn check_wire(&self) -> Result<(), String> {
        if self.endpoint > u32::from(u8::MAX) {
            return Err(format!("bad sender endpoint {}", self.endpoint));
        }
        if self.iterations > MAX_ITER || self.warmup > MAX_ITER {
            return Err("iterations (-N) and warm-ups (-W) must fit a C int".into());
        }
        if self.list_count as usize > MAX_LIST {
            return Err(format!("more than {MAX_LIST} lengths"));
        }
        if self.list_count == 0 && self.end > MAX_LEN {
            return Err(format!(
                "end length (-E) {} is above the maximum {MAX_LEN} (1 GiB)",
                self.end
            ));
        }
        Ok(())
    }

    /// Check what a sender may ask for (stricter than what a receiver
    /// accepts from the classic tool).
    ///
    /// # Errors
    /// Describes the first bad value.
    pub fn validate(&self) -> Result<(), String> {
        self.check_wire()?;
        if self.iterations == 0 {
            return Err("iterations (-N) must be at least 1".into());
        }
        if self.incr > i32::MAX as u32 {
            return Err("increment (-I) must fit a C int".into());
        }
        if self.geometric() && !(self.mult > 0.0 && self.mult <= MAX_MULT) {
            return Err(format!(
                "multiplier (-M) {} must be above 0 and at most {MAX_MULT}",
                self.mult
            ));
        }
        Ok(())
    }

    /// Whether lengths grow by [`Params::mult`] (the increment, as a C
    /// `int`, is not positive).
    pub fn geometric(&self) -> bool {
        (self.incr as i32) <= 0
    }

    /// The lengths of a run without an explicit list, as the classic tool
    /// steps them: add the increment, or multiply (truncating) and add 1
    /// when that does not grow.
    pub fn generated_lengths(&self) -> impl Iterator<Item = u32> + '_ {
        let end = u64::from(self.end);
        let (geometric, incr, mult) = (self.geometric(), u64::from(self.incr), self.mult);
        let mut next = Some(u64::from(self.start));
        std::iter::from_fn(move || {
            let len = next.filter(|&l| l < end)?;
            next = Some(if geometric {
                // Saturating (NaN: 0), so any multiplier a sender sends
                // is harmless.
                let grown = (len as f64 * mult) as u64;
                if grown > len {
                    grown
                } else {
                    len + 1
                }
            } else {
                len + incr
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
        if self.budget == 0 {
            return self.warmup;
        }
        self.warmup.min(self.iterations_for(len))
    }

    /// Round trips of the loop for messages of `len` bytes, warm-up
    /// included (each length also has two closing pings and one pong).
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
            iterations: 1000,
            warmup: 10,
            start: 0,
            end: 128,
            incr: 1,
            mult: 1.0,
            verify: true,
            block: false,
            issend: true,
            seed: None,
            budget: 0,
            list_count: 0,
        }
    }

    #[test]
    fn encode_is_the_classic_108_byte_struct_and_round_trips() {
        let p = sample();
        let b = p.encode().unwrap();
        assert_eq!(b.len(), PARAMS_LEN);
        assert_eq!(&b[0..4], &[0, 0, 0, 0]);
        assert_eq!(&b[4..8], &128u32.to_be_bytes());
        assert_eq!(&b[8..12], &1u32.to_be_bytes());
        assert_eq!(&b[12..16], &10u32.to_be_bytes());
        assert_eq!(&b[16..20], &1u32.to_be_bytes());
        assert_eq!(&b[20..24], &1000u32.to_be_bytes());
        assert_eq!(&b[24..28], &0u32.to_be_bytes());
        assert_eq!(&b[28..32], &3u32.to_be_bytes());
        assert_eq!(&b[32..36], &1u32.to_be_bytes());
        assert_eq!(&b[36..40], &[0xdd, 0x47, 0x1a, 0x2b]);
        assert_eq!(&b[40..42], &[0x02, 0x60]);
        assert_eq!(&b[42..51], b"1.000000\0");
        assert!(b[51..].iter().all(|&c| c == 0));
        assert_eq!(Params::decode(&b).unwrap(), p);
    }

    #[test]
    fn extensions_ride_after_the_multiplier() {
        let mut p = sample();
        p.incr = 0;
        p.mult = 2.0;
        p.seed = Some(0xdead_beef);
        p.budget = 256 << 20;
        p.list_count = MAX_LIST as u32;
        let b = p.encode().unwrap();
        let m = &b[42..42 + MULT_LEN];
        let m = &m[..m.iter().position(|&c| c == 0).unwrap()];
        assert_eq!(m, b"2.000000 seed=deadbeef budget=256 list=1048576");
        assert_eq!(Params::decode(&b).unwrap(), p);
        // The largest multiplier still fits with every extension.
        p.mult = MAX_MULT;
        assert!(Params::decode(&p.encode().unwrap()).is_ok());
    }

    #[test]
    fn decode_reads_what_a_classic_sender_writes() {
        // A classic sender: stack garbage after the NUL and in the padding.
        let mut b = sample().encode().unwrap();
        b[42..51].copy_from_slice(b"1.500000\0");
        for (i, c) in b[51..].iter_mut().enumerate() {
            *c = 0xa5 ^ i as u8;
        }
        b[8..12].copy_from_slice(&0u32.to_be_bytes());
        let p = Params::decode(&b).unwrap();
        assert_eq!(p.mult, 1.5);
        assert_eq!(p.seed, None);
        assert!(p.geometric());
        // atof reads a prefix; garbage is 0 (then lengths step by 1).
        assert_eq!(atof("2.5abc"), 2.5);
        assert_eq!(atof("x"), 0.0);
        assert_eq!(atof("-"), 0.0);
    }

    #[test]
    fn decode_refuses_garbage() {
        let b = sample().encode().unwrap();
        assert!(Params::decode(&b[..100]).is_err());
        let mut p = sample();
        p.end = MAX_LEN + 1;
        assert!(Params::decode(&p.encode().unwrap()).is_err());
        let mut p = sample();
        p.endpoint = 256;
        assert!(Params::decode(&p.encode().unwrap()).is_err());
        let mut b = sample().encode().unwrap();
        b[42..60].copy_from_slice(b"1.000000 seed=zz\0\0");
        assert!(Params::decode(&b).is_err());
        // The sender refuses what a receiver tolerates.
        let mut p = sample();
        p.iterations = 0;
        assert!(Params::decode(&p.encode().unwrap()).is_ok());
        assert!(p.validate().is_err());
        let mut p = sample();
        p.incr = 0;
        p.mult = 0.0;
        assert!(p.validate().is_err());
    }

    #[test]
    fn lengths_step_as_the_classic_tool() {
        let mut p = sample();
        p.start = 0;
        p.end = 5;
        assert_eq!(p.generated_lengths().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        p.incr = 3;
        p.start = 1;
        p.end = 10;
        assert_eq!(p.generated_lengths().collect::<Vec<_>>(), [1, 4, 7]);
        p.incr = 0;
        p.mult = 2.0;
        p.start = 0;
        p.end = 17;
        assert_eq!(
            p.generated_lengths().collect::<Vec<_>>(),
            [0, 1, 2, 4, 8, 16]
        );
        p.mult = 1.5;
        p.end = 10;
        assert_eq!(
            p.generated_lengths().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 6, 9]
        );
        // A negative increment (as a C int) multiplies too.
        p.incr = u32::MAX;
        p.mult = 4.0;
        p.start = 3;
        p.end = MAX_LEN;
        let v: Vec<u32> = p.generated_lengths().collect();
        assert_eq!(v.last(), Some(&(3 << 28)));
        for m in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
            p.mult = m;
            p.start = 0;
            p.end = 4;
            let v: Vec<u32> = p.generated_lengths().take(10).collect();
            assert_eq!(v[..2], [0, 1], "mult {m}");
        }
    }

    #[test]
    fn wire_mult_is_what_the_receiver_reads() {
        assert_eq!(Params::wire_mult(2.0), 2.0);
        assert_eq!(Params::wire_mult(1.1), 1.1);
        assert_eq!(Params::wire_mult(1.0 / 3.0), 0.333333);
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
